package aws

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadPriceTable(t *testing.T) {
	t.Parallel()
	want := map[string]float64{"m5.large": 0.096, "c5.xlarge": 0.17, "u-6tb1.112xlarge": 54.6}
	for name, content := range map[string]string{
		"prices.csv":   "# on-demand, us-east-1\ninstance_type,price_per_hour\nm5.large,0.096\n\n c5.xlarge , 0.17\n\"u-6tb1.112xlarge\",54.6\n",
		"noheader.CSV": "m5.large,0.096\nc5.xlarge,0.17\nu-6tb1.112xlarge,54.6\n",
		"prices.yaml":  "# on-demand, us-east-1\nm5.large: 0.096\nc5.xlarge: 0.17\nu-6tb1.112xlarge: 54.6\n",
		"prices.yml":   "{m5.large: 0.096, c5.xlarge: \"0.17\", u-6tb1.112xlarge: 54.6}\n",
		"prices.json":  "{\n  \"m5.large\": 0.096,\n  \"c5.xlarge\": 0.17,\n  \"u-6tb1.112xlarge\": 54.6\n}\n",
	} {
		got, err := LoadPriceTable(writeFile(t, name, content))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

func TestLoadPriceTableErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, content string
		want          []string // substrings of the error
	}{
		{"bad.csv", "instance_type,price_per_hour\nm5.large,0.096\nc5.xlarge,cheap\n", []string{"bad.csv", "line 3", "c5.xlarge", `"cheap" is not a number`}},
		{"header.csv", "type,price\nm5.large,0.096\n", []string{"line 1", "type"}},
		{"fields.csv", "m5.large,0.096\nc5.xlarge,0.17,extra\n", []string{"line 2", "3 fields, want 2"}},
		{"dup.csv", "m5.large,0.096\n# again\nm5.large,0.1\n", []string{"line 3", "already priced on line 1"}},
		{"neg.csv", "m5.large,-1\n", []string{"line 1", "negative"}},
		{"nan.csv", "m5.large,NaN\n", []string{"line 1", "not a number"}},
		{"type.csv", "m5 large,0.1\n", []string{"line 1", "not an instance type"}},
		{"quote.csv", "m5.large,\"0.1\nc5.large,0.2\n", []string{"quote.csv", "line"}},
		{"empty.csv", "# nothing\n", []string{"no prices"}},
		{"bad.yaml", "m5.large: 0.096\nc5.xlarge: [0.17]\n", []string{"line 2", "must be a number"}},
		{"list.yaml", "- m5.large\n", []string{"line 1", "want a mapping"}},
		{"dup.yaml", "m5.large: 0.096\nm5.large: 0.1\n", []string{"line 2", "already priced on line 1"}},
		{"syntax.json", "{\"m5.large\": 0.096,\n \"c5.large\" 0.1}\n", []string{"syntax.json", "line 2"}},
		{"empty.yaml", "", []string{"no prices"}},
		{"prices.txt", "m5.large,0.096\n", []string{"unknown extension", ".txt"}},
	} {
		_, err := LoadPriceTable(writeFile(t, tc.name, tc.content))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
	if _, err := LoadPriceTable(filepath.Join(t.TempDir(), "missing.csv")); err == nil {
		t.Error("missing file: no error")
	}
}

func FuzzParsePriceTable(f *testing.F) {
	f.Add([]byte("instance_type,price_per_hour\nm5.large,0.096\n"), true)
	f.Add([]byte("m5.large: 0.096\nc5.xlarge: 0.17\n"), false)
	f.Add([]byte("{\"m5.large\": 1e3}"), false)
	f.Add([]byte("\"a.b\",\"1\"\n# c\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, csv bool) {
		format := "yaml"
		if csv {
			format = "csv"
		}
		prices, err := parsePriceTable(data, format)
		if err != nil {
			return
		}
		for k, v := range prices {
			if !instanceTypeRE.MatchString(k) || v < 0 || v != v {
				t.Fatalf("accepted %q: %v", k, v)
			}
		}
	})
}
