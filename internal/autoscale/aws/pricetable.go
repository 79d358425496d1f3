package aws

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// instanceTypeRE is the shape of an EC2 instance type: family, a dot, size
// ("m5.large", "u-6tb1.112xlarge", "m7i-flex.large").
var instanceTypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*\.[a-z0-9-]+$`)

// csvHeader is the optional first line of a CSV price table.
var csvHeader = []string{"instance_type", "price_per_hour"}

// LoadPriceTable reads on-demand prices (dollars per hour by instance type)
// from a file, by extension:
//
//   - .csv: one "instance_type,price_per_hour" pair a line, optionally
//     after that exact header line; lines starting with # and blank lines
//     are skipped.
//   - .yaml, .yml or .json: one mapping from instance type to price, such
//     as {"m5.large": 0.096}.
//
// Errors name the file and, where there is one, the line.
func LoadPriceTable(path string) (map[string]float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("price table: %w", err)
	}
	var format string
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".csv":
		format = "csv"
	case ".yaml", ".yml":
		format = "yaml"
	case ".json":
		format = "json"
	default:
		return nil, fmt.Errorf("price table %s: unknown extension %q (want .csv, .yaml, .yml or .json)", path, ext)
	}
	prices, err := parsePriceTable(data, format)
	if err != nil {
		return nil, fmt.Errorf("price table %s: %w", path, err)
	}
	return prices, nil
}

// parsePriceTable parses a price table in format "csv", "yaml" or "json".
func parsePriceTable(data []byte, format string) (map[string]float64, error) {
	var prices map[string]float64
	var err error
	switch format {
	case "csv":
		prices, err = parseCSV(data)
	case "yaml":
		prices, err = parseYAML(data)
	case "json":
		// JSON is YAML, but yaml reports a JSON syntax error at the line
		// of the enclosing brace: check the syntax with encoding/json.
		if err := checkJSON(data); err != nil {
			return nil, err
		}
		prices, err = parseYAML(data)
	default:
		return nil, fmt.Errorf("unknown format %q", format)
	}
	if err != nil {
		return nil, err
	}
	if len(prices) == 0 {
		return nil, errors.New("no prices")
	}
	return prices, nil
}

func parseCSV(data []byte) (map[string]float64, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	prices := map[string]float64{}
	lineOf := map[string]int{}
	first := true
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return prices, nil
		}
		if err != nil {
			return nil, err // csv.ParseError names the line
		}
		line, _ := r.FieldPos(0)
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if first {
			first = false
			if len(rec) == 2 && strings.EqualFold(rec[0], csvHeader[0]) && strings.EqualFold(rec[1], csvHeader[1]) {
				continue
			}
		}
		if len(rec) != 2 {
			return nil, fmt.Errorf("line %d: %d fields, want 2 (instance_type,price_per_hour)", line, len(rec))
		}
		if err := addPrice(prices, lineOf, rec[0], rec[1], line); err != nil {
			return nil, err
		}
	}
}

func parseYAML(data []byte) (map[string]float64, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err // yaml's errors name the line
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, errors.New("no prices")
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping from instance type to price per hour", m.Line)
	}
	prices := map[string]float64{}
	lineOf := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: instance type must be a string", k.Line)
		}
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: price of %s must be a number", v.Line, k.Value)
		}
		if err := addPrice(prices, lineOf, k.Value, v.Value, k.Line); err != nil {
			return nil, err
		}
	}
	return prices, nil
}

// checkJSON reports a JSON syntax error with its line.
func checkJSON(data []byte) error {
	var v any
	err := json.Unmarshal(data, &v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line := 1 + bytes.Count(data[:min(int(syn.Offset), len(data))], []byte("\n"))
		return fmt.Errorf("line %d: %w", line, err)
	}
	return err
}

// addPrice checks one entry and adds it to prices.
func addPrice(prices map[string]float64, lineOf map[string]int, instanceType, price string, line int) error {
	if !instanceTypeRE.MatchString(instanceType) {
		return fmt.Errorf("line %d: %q is not an instance type (such as m5.large)", line, instanceType)
	}
	if prev, ok := lineOf[instanceType]; ok {
		return fmt.Errorf("line %d: %s is already priced on line %d", line, instanceType, prev)
	}
	p, err := parsePrice(price)
	if err != nil {
		return fmt.Errorf("line %d: price of %s: %w", line, instanceType, err)
	}
	prices[instanceType] = p
	lineOf[instanceType] = line
	return nil
}

// parsePrice parses a non-negative, finite price in dollars.
func parsePrice(s string) (float64, error) {
	p, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(p) || math.IsInf(p, 0) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if p < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return p, nil
}
