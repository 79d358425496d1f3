package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// Output: every command's -o json and -o yaml goes through printJSON, so
// that all of them agree:
//   - proto messages use their proto field names and show unset fields;
//   - numbers are numbers, 64-bit integers included (protojson writes
//     int64 as strings, so task_count would be "3" in one command and 3
//     in another);
//   - nothing is HTML-escaped (a command such as `>&2` stays as written);
//   - -o yaml is the same document as YAML.

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// printJSON writes v as indented JSON (or, with -o yaml, YAML): proto
// messages with their proto field names, slices of them as an array.
func (a *app) printJSON(v any) error {
	doc, err := outputValue(v)
	if err != nil {
		return err
	}
	if a.yaml {
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			return err
		}
		if err := enc.Close(); err != nil {
			return err
		}
		_, err := a.stdout.Write(buf.Bytes())
		return err
	}
	return writeJSON(a.stdout, doc)
}

// writeJSON writes doc as indented JSON without HTML escaping.
func writeJSON(w interface{ Write([]byte) (int, error) }, doc any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// outputValue turns v into plain JSON values (maps, slices, strings,
// int64, float64, bool, nil) with 64-bit integers of proto messages as
// numbers.
func outputValue(v any) (any, error) {
	switch m := v.(type) {
	case proto.Message:
		return protoValue(m)
	case []proto.Message:
		out := make([]any, len(m))
		for i, x := range m {
			d, err := protoValue(x)
			if err != nil {
				return nil, err
			}
			out[i] = d
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(m))
		for k, x := range m {
			d, err := outputValue(x)
			if err != nil {
				return nil, err
			}
			out[k] = d
		}
		return out, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeJSON(b)
}

// protoValue renders a message as protojson does, then turns the strings
// protojson writes for 64-bit integer fields back into numbers.
func protoValue(m proto.Message) (any, error) {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return nil, err
	}
	doc, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	return numbers(m.ProtoReflect().Descriptor(), doc), nil
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return plainNumbers(doc), nil
}

// plainNumbers replaces json.Number by int64 (when it is an integer) or
// float64, so that YAML writes numbers too.
func plainNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return string(x)
	case map[string]any:
		for k, e := range x {
			x[k] = plainNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = plainNumbers(e)
		}
	}
	return v
}

// numbers walks doc, the protojson form of a message of descriptor md,
// and turns 64-bit integer fields' strings into numbers.
func numbers(md protoreflect.MessageDescriptor, doc any) any {
	obj, ok := doc.(map[string]any)
	if !ok {
		return doc
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := string(fd.Name())
		v, ok := obj[name]
		if !ok {
			continue
		}
		switch {
		case fd.IsMap():
			if m, ok := v.(map[string]any); ok {
				for k, e := range m {
					m[k] = fieldValue(fd.MapValue(), e)
				}
			}
		case fd.IsList():
			if l, ok := v.([]any); ok {
				for k, e := range l {
					l[k] = fieldValue(fd, e)
				}
			}
		default:
			obj[name] = fieldValue(fd, v)
		}
	}
	return obj
}

// fieldValue converts one value of field fd (a list element or map value
// included).
func fieldValue(fd protoreflect.FieldDescriptor, v any) any {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if s, ok := v.(string); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n
			}
		}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if s, ok := v.(string); ok {
			if n, err := strconv.ParseUint(s, 10, 64); err == nil {
				return n
			}
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		// Well-known types (Timestamp...) have JSON forms of their own.
		if fd.Message().FullName().Parent() == "google.protobuf" {
			return v
		}
		return numbers(fd.Message(), v)
	}
	return v
}

// Reasons: a task's or attempt's end is shown the same way in every
// table: the EXIT column holds the exit code of a process that exited,
// nothing for one killed by a signal, and the REASON column says why it
// ended, with the signal when there was one: "timeout (SIGTERM)",
// "oom (SIGKILL)", "signal (SIGSEGV)".

// taskSignal is the signal that ended a task's latest attempt, if any: the
// task keeps the attempt's exit status, 128 plus the signal's number for a
// process a signal killed.
func taskSignal(reason string, exit int32) string {
	if reason == "" || reason == "exit" || exit <= 128 || exit > 128+64 {
		return ""
	}
	return signalName(exit - 128)
}

// signalName names a signal number as the server does ("SIGTERM").
func signalName(n int32) string {
	if n <= 0 {
		return ""
	}
	s := syscall.Signal(n)
	if name, ok := signalNames[s]; ok {
		return name
	}
	return fmt.Sprintf("signal %d", n)
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT", syscall.SIGILL: "SIGILL",
	syscall.SIGTRAP: "SIGTRAP", syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE",
	syscall.SIGKILL: "SIGKILL", syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
}

// exitText is the EXIT column: the exit code, or nothing when a signal
// ended the process (the REASON column names it).
func exitText(exit int32, signal string) string {
	if signal != "" {
		return ""
	}
	return strconv.Itoa(int(exit))
}

// reasonText is the REASON column: the reason, with the signal when a
// signal ended the process.
func reasonText(reason, signal string) string {
	switch {
	case signal == "":
		return reason
	case reason == "":
		return "signal (" + signal + ")"
	}
	return reason + " (" + signal + ")"
}

// costText is an estimated cost, or says there is no price to estimate
// it with.
func costText(usd float64) string {
	if usd <= 0 {
		return "no price configured"
	}
	return fmt.Sprintf("$%.4f", usd)
}

// jobElapsed is the time a progress line shows: the job's run time, from
// its start to its end (or now, while it runs); before it starts, the time
// since the watch began.
func jobElapsed(j *apiv1.Job, watchStart time.Time) time.Duration {
	if j.StartedAt == nil {
		return time.Since(watchStart)
	}
	end := time.Now()
	if j.FinishedAt != nil {
		end = j.FinishedAt.AsTime()
	}
	return max(0, end.Sub(j.StartedAt.AsTime()))
}
