package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A small file, with its comments as protoc records them.
func sampleSet(t *testing.T) []byte {
	t.Helper()
	s := proto.String
	i32 := proto.Int32
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	typ := func(k descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto_Type {
		return k.Enum()
	}
	fd := &descriptorpb.FileDescriptorProto{
		Name:       s("demo/v1/demo.proto"),
		Package:    s("demo.v1"),
		Syntax:     s("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{
				Name: s("Thing"),
				Field: []*descriptorpb.FieldDescriptorProto{
					{Name: s("thing_id"), JsonName: s("thingId"), Number: i32(1), Label: opt, Type: typ(descriptorpb.FieldDescriptorProto_TYPE_STRING)},
					{Name: s("size"), JsonName: s("size"), Number: i32(2), Label: opt, Type: typ(descriptorpb.FieldDescriptorProto_TYPE_INT64)},
					{Name: s("colors"), JsonName: s("colors"), Number: i32(3), Label: rep, Type: typ(descriptorpb.FieldDescriptorProto_TYPE_ENUM), TypeName: s(".demo.v1.Color")},
					{Name: s("labels"), JsonName: s("labels"), Number: i32(4), Label: rep, Type: typ(descriptorpb.FieldDescriptorProto_TYPE_MESSAGE), TypeName: s(".demo.v1.Thing.LabelsEntry")},
					{Name: s("made"), JsonName: s("made"), Number: i32(5), Label: opt, Type: typ(descriptorpb.FieldDescriptorProto_TYPE_MESSAGE), TypeName: s(".google.protobuf.Timestamp")},
				},
				NestedType: []*descriptorpb.DescriptorProto{{
					Name:    s("LabelsEntry"),
					Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
					Field: []*descriptorpb.FieldDescriptorProto{
						{Name: s("key"), JsonName: s("key"), Number: i32(1), Label: opt, Type: typ(descriptorpb.FieldDescriptorProto_TYPE_STRING)},
						{Name: s("value"), JsonName: s("value"), Number: i32(2), Label: opt, Type: typ(descriptorpb.FieldDescriptorProto_TYPE_STRING)},
					},
				}},
			},
			{Name: s("Empty")},
		},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: s("Color"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: s("COLOR_UNSPECIFIED"), Number: i32(0)},
				{Name: s("COLOR_RED"), Number: i32(1)},
			},
		}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: s("ThingService"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: s("GetThing"), InputType: s(".demo.v1.Empty"), OutputType: s(".demo.v1.Thing")},
				{Name: s("WatchThings"), InputType: s(".demo.v1.Empty"), OutputType: s(".demo.v1.Thing"), ServerStreaming: proto.Bool(true)},
			},
		}},
		SourceCodeInfo: &descriptorpb.SourceCodeInfo{Location: []*descriptorpb.SourceCodeInfo_Location{
			{Path: []int32{2}, Span: []int32{1, 0, 10}, LeadingComments: s(" The demo API.\n")},
			{Path: []int32{4, 0}, Span: []int32{3, 0, 10}, LeadingComments: s(" Thing is a thing,\n kept | stored.\n")},
			{Path: []int32{4, 0, 2, 0}, Span: []int32{4, 0, 10}, LeadingComments: s(" The thing's ID.\n")},
			{Path: []int32{4, 0, 2, 1}, Span: []int32{5, 0, 10}, TrailingComments: s(" bytes\n")},
			{Path: []int32{5, 0, 2, 1}, Span: []int32{6, 0, 10}, TrailingComments: s(" red as a rose\n")},
			{Path: []int32{6, 0}, Span: []int32{7, 0, 10}, LeadingComments: s(" ThingService serves things.\n\n Second paragraph.\n")},
			{Path: []int32{6, 0, 2, 1}, Span: []int32{8, 0, 10}, LeadingComments: s(" WatchThings streams\n things.\n")},
		}},
	}
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(timestamppb.File_google_protobuf_timestamp_proto), fd,
	}}
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateSample(t *testing.T) {
	out, err := Generate(sampleSet(t), "demo.v1")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(out)
	for _, want := range []string{
		"# API reference (demo.v1)",
		"The demo API.",
		"## ThingService\n\nThingService serves things.\n\nSecond paragraph.\n",
		"| [WatchThings](#thingservicewatchthings) | [Empty](#empty) | stream [Thing](#thing) |",
		"### ThingService.GetThing\n\n`POST /demo.v1.ThingService/GetThing` — [Empty](#empty) → [Thing](#thing) (unary)",
		"### ThingService.WatchThings\n\n`POST /demo.v1.ThingService/WatchThings` — [Empty](#empty) → stream [Thing](#thing) (server stream",
		"WatchThings streams things.",
		"### Thing\n\nThing is a thing, kept | stored.\n",
		"| `thing_id` | `thingId` | string | The thing's ID. |",
		"| `size` | `size` | int64 (a string in JSON) | bytes |",
		"| `colors` | `colors` | repeated [Color](#color) |  |",
		"| `labels` | `labels` | map&lt;string, string&gt; |  |",
		"| `made` | `made` | `google.protobuf.Timestamp` |  |",
		"### Empty\n\nNo fields.",
		"| `COLOR_RED` | 1 | red as a rose |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the reference lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "LabelsEntry") {
		t.Errorf("a map entry is documented as a message:\n%s", doc)
	}
	if strings.Contains(doc, "### Timestamp") {
		t.Errorf("an imported message is documented:\n%s", doc)
	}
	if _, err := Generate(sampleSet(t), "other.v1"); err == nil {
		t.Error("Generate of a package not in the set did not fail")
	}
}

// TestGenerateRepository renders the repository's API as `make generate`
// does (protoc is installed by `make tools`) and checks that docs/api.md
// is that rendering.
func TestGenerateRepository(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatalf("protoc is needed (make tools installs it): %v", err)
	}
	root := filepath.Join("..", "..")
	files, _ := filepath.Glob(filepath.Join(root, "proto", "haul", "api", "v1", "*.proto"))
	if len(files) == 0 {
		t.Fatal("no proto/haul/api/v1/*.proto")
	}
	set := filepath.Join(t.TempDir(), "api.pb")
	args := []string{"-I", filepath.Join(root, "proto"), "--include_source_info", "--include_imports", "--descriptor_set_out=" + set}
	if out, err := exec.Command(protoc, append(args, files...)...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	b, err := os.ReadFile(set)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Generate(b, "haul.api.v1")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(out)
	for _, want := range []string{
		"## JobService", "## AdminService",
		"### JobService.SubmitJob\n\n`POST /haul.api.v1.JobService/SubmitJob`",
		"SubmitJob validates a job spec and stores the job and all of its tasks.",
		"### JobService.GetLogs\n\n`POST /haul.api.v1.JobService/GetLogs` — [GetLogsRequest](#getlogsrequest) → stream [GetLogsResponse](#getlogsresponse) (server stream",
		"### Job\n", "| `job_id` | `jobId` | string |", "### LogStream\n", "| `LOG_STREAM_STDERR` | 2 |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the reference lacks %q", want)
		}
	}
	committed, err := os.ReadFile(filepath.Join(root, "docs", "api.md"))
	if err != nil {
		t.Fatalf("docs/api.md: %v (run make generate)", err)
	}
	if string(committed) != doc {
		t.Error("docs/api.md is not the rendering of proto/haul/api/v1: run make generate and commit")
	}
}
