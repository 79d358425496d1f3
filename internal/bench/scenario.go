package bench

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The scenarios: the shapes of job haul bench runs.
const (
	// Wide is N independent tasks (one foreach).
	Wide = "wide"
	// Chain is N tasks in sequence, each after the one before.
	Chain = "chain"
	// Fanout is 1 → N-2 → 1: a source, N-2 tasks after it, and a sink
	// after all of them (one group dependency).
	Fanout = "fanout"
	// Layered is a random DAG of L layers, each task after K random tasks
	// of the layer before (seeded).
	Layered = "layered"
	// Dynamic is tasks adding tasks: a root adds A adder tasks (one
	// AddTasks call), and each adder adds its share of the leaves (one
	// call each): 1 + A calls, A at most 10.
	Dynamic = "dynamic"
)

// Scenarios lists the scenarios in the order the docs give them.
func Scenarios() []string { return []string{Wide, Chain, Fanout, Layered, Dynamic} }

// MaxAdders is the most adder tasks the dynamic scenario has (each costs
// one AddTasks call, and each call a pass over the job).
const MaxAdders = 10

// Shape says which job to build.
type Shape struct {
	Scenario string
	// Tasks is how many tasks the job has in the end.
	Tasks int
	// Layers and Parents shape the layered scenario (defaults 10 and 3).
	Layers, Parents int
	// Seed makes the layered scenario's random parents.
	Seed uint64
	// MaxWorkers is written as the job's max_workers (0: none).
	MaxWorkers int
	// Command is every task's argv but the dynamic scenario's adders
	// (default [/bin/true]).
	Command []string
	// Adder is the argv of a dynamic-scenario task that adds the tasks of
	// the fragment file; the file's name may hold the placeholder {i}.
	Adder func(file string) []string
	// Dir is where the dynamic scenario's fragment files are meant to be
	// written (their names appear in the adders' argv).
	Dir string
}

// Plan is a built scenario: the job spec to submit and, for the dynamic
// scenario, the fragment files its adder tasks add.
type Plan struct {
	Spec []byte
	// Fragments maps a file name (under Shape.Dir) to its content.
	Fragments map[string][]byte
	// Tasks is how many tasks the job has in the end.
	Tasks int
}

// specJob and specTask are the job spec's JSON form (JSON is YAML).
type specJob struct {
	Name       string     `json:"name,omitempty"`
	Retries    *int       `json:"retries,omitempty"`
	MaxWorkers int        `json:"max_workers,omitempty"`
	Tasks      []specTask `json:"tasks"`
}

type specTask struct {
	Key     string       `json:"key"`
	Foreach *specForeach `json:"foreach,omitempty"`
	Command []string     `json:"command"`
	After   []string     `json:"after,omitempty"`
}

type specForeach struct {
	Range  []int    `json:"range,omitempty"`
	Values []string `json:"values,omitempty"`
}

func (s *Shape) validate() error {
	var errs []error
	if !slices.Contains(Scenarios(), s.Scenario) {
		errs = append(errs, fmt.Errorf("scenario %q: want %s", s.Scenario, strings.Join(Scenarios(), ", ")))
	}
	least := 1
	switch s.Scenario {
	case Fanout:
		least = 3
	case Dynamic:
		least = 3
	case Layered:
		least = s.Layers
	}
	if s.Tasks < least {
		errs = append(errs, fmt.Errorf("tasks %d: the %s scenario needs at least %d", s.Tasks, s.Scenario, least))
	}
	if s.Scenario == Layered {
		if s.Layers < 1 {
			errs = append(errs, fmt.Errorf("layers %d: want at least 1", s.Layers))
		}
		if s.Parents < 1 {
			errs = append(errs, fmt.Errorf("parents %d: want at least 1", s.Parents))
		}
	}
	if s.MaxWorkers < 0 {
		errs = append(errs, fmt.Errorf("max workers %d is negative", s.MaxWorkers))
	}
	if s.Scenario == Dynamic {
		if s.Adder == nil {
			errs = append(errs, errors.New("the dynamic scenario needs an adder command"))
		}
		if s.Dir == "" || strings.ContainsAny(s.Dir, "{}") {
			errs = append(errs, fmt.Errorf("fragment directory %q: want a path without { or }", s.Dir))
		}
	}
	return errors.Join(errs...)
}

// Build builds a scenario's job spec (and fragments). The spec is JSON,
// one task entry per line.
func Build(s Shape) (*Plan, error) {
	if s.Scenario == Layered {
		s.Layers = cmp.Or(s.Layers, 10)
		s.Parents = cmp.Or(s.Parents, 3)
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cmd := s.Command
	if len(cmd) == 0 {
		cmd = []string{"/bin/true"}
	}
	zero := 0
	job := specJob{Name: "bench-" + s.Scenario, Retries: &zero, MaxWorkers: s.MaxWorkers}
	p := &Plan{Tasks: s.Tasks}
	n := s.Tasks
	switch s.Scenario {
	case Wide:
		job.Tasks = []specTask{{Key: "w-{i}", Foreach: &specForeach{Range: []int{0, n}}, Command: cmd}}
	case Chain:
		job.Tasks = []specTask{{Key: "c-0", Command: cmd}}
		if n > 1 {
			// Element i has the value i+1: task c-(i+1) waits for c-i.
			vals := make([]string, n-1)
			for i := range vals {
				vals[i] = strconv.Itoa(i + 1)
			}
			job.Tasks = append(job.Tasks, specTask{Key: "c-{item}", Foreach: &specForeach{Values: vals}, Command: cmd, After: []string{"c-{i}"}})
		}
	case Fanout:
		job.Tasks = []specTask{
			{Key: "src", Command: cmd},
			{Key: "f-{i}", Foreach: &specForeach{Range: []int{0, n - 2}}, Command: cmd, After: []string{"src"}},
			{Key: "sink", Command: cmd, After: []string{"f-*"}},
		}
	case Layered:
		job.Tasks = layered(n, s.Layers, s.Parents, s.Seed, cmd)
	case Dynamic:
		p.Fragments = map[string][]byte{}
		job.Tasks = dynamic(n, s.Adder, s.Dir, cmd, p.Fragments)
	}
	spec, err := encode(job)
	if err != nil {
		return nil, err
	}
	p.Spec = spec
	return p, nil
}

// layered spreads n tasks over l layers (the first layers take the
// remainder); each task of a layer after the first waits for k distinct
// random tasks of the layer before (all of them when it has no more).
func layered(n, l, k int, seed uint64, cmd []string) []specTask {
	rng := rand.New(rand.NewPCG(seed, 0x6861756c))
	size := func(layer int) int {
		w := n / l
		if layer < n%l {
			w++
		}
		return w
	}
	tasks := []specTask{{Key: "l0-{i}", Foreach: &specForeach{Range: []int{0, size(0)}}, Command: cmd}}
	for layer := 1; layer < l; layer++ {
		prev := size(layer - 1)
		kk := min(k, prev)
		for i := range size(layer) {
			after := make([]string, 0, kk)
			if 2*kk > prev {
				for _, j := range rng.Perm(prev)[:kk] {
					after = append(after, "l"+strconv.Itoa(layer-1)+"-"+strconv.Itoa(j))
				}
			}
			picked := make(map[int]bool, kk)
			for len(after) < kk {
				j := rng.IntN(prev)
				if picked[j] {
					continue
				}
				picked[j] = true
				after = append(after, "l"+strconv.Itoa(layer-1)+"-"+strconv.Itoa(j))
			}
			tasks = append(tasks, specTask{Key: "l" + strconv.Itoa(layer) + "-" + strconv.Itoa(i), Command: cmd, After: after})
		}
	}
	return tasks
}

// adders is how many adder tasks the dynamic scenario of n tasks has.
func adders(n int) int { return max(1, min(MaxAdders, (n-1)/2)) }

// dynamic builds the dynamic scenario: the spec holds the root alone; its
// fragment adds the adders (after the root), and adder a's fragment adds
// its leaves (after it).
func dynamic(n int, adder func(string) []string, dir string, cmd []string, frags map[string][]byte) []specTask {
	a := adders(n)
	leaves := n - 1 - a
	root := filepath.Join(dir, "add-root.yaml")
	add := specJob{Tasks: []specTask{{Key: "add-{i}", Foreach: &specForeach{Range: []int{0, a}},
		Command: adder(filepath.Join(dir, "add-{i}.yaml")), After: []string{"root"}}}}
	frags[root], _ = encode(add)
	for i := range a {
		m := leaves / a
		if i < leaves%a {
			m++
		}
		name := "add-" + strconv.Itoa(i)
		leaf := specJob{Tasks: []specTask{{Key: "leaf-" + strconv.Itoa(i) + "-{i}", Foreach: &specForeach{Range: []int{0, m}},
			Command: cmd, After: []string{name}}}}
		frags[filepath.Join(dir, name+".yaml")], _ = encode(leaf)
	}
	return []specTask{{Key: "root", Command: adder(root)}}
}

// encode writes a spec as JSON with one task entry per line.
func encode(j specJob) ([]byte, error) {
	tasks := j.Tasks
	j.Tasks = nil
	head, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("bench: encode spec: %w", err)
	}
	var b bytes.Buffer
	b.Write(bytes.TrimSuffix(head, []byte(`"tasks":null}`)))
	b.WriteString("\"tasks\": [\n")
	for i, t := range tasks {
		line, err := json.Marshal(t)
		if err != nil {
			return nil, fmt.Errorf("bench: encode spec: %w", err)
		}
		b.Write(line)
		if i < len(tasks)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]}\n")
	return b.Bytes(), nil
}
