package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/haul-dev/haul/client"
)

// Submit a job of three tasks, wait for it, and print a task's output.
// client.New("") reads HAUL_SERVER and HAUL_API_TOKEN.
func Example() {
	ctx := context.Background()
	c := client.New("")

	spec := []byte(`
name: squares
tasks:
  - key: "sq-{i}"
    foreach: {range: [0, 3]}
    command: [sh, -c, 'echo $(({i} * {i}))']
`)
	id, err := c.Submit(ctx, spec, nil)
	if err != nil {
		log.Fatal(err)
	}
	job, err := c.Wait(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.GetState(), job.GetCounts().GetSucceeded(), "of", job.GetTaskCount())

	var out strings.Builder
	if err := c.Logs(ctx, id, "sq-2", false, &out); err != nil {
		log.Fatal(err)
	}
	fmt.Print(out.String())
	// Output:
	// succeeded 3 of 3
	// 4
}

// Follow a job as it runs: Watch calls back with each change.
func ExampleClient_Watch() {
	ctx := context.Background()
	c := client.New(os.Getenv("HAUL_SERVER"), client.WithToken(os.Getenv("HAUL_API_TOKEN")))
	id, err := c.Submit(ctx, []byte(`{"name": "watched", "tasks": [{"key": "t", "command": ["true"]}]}`), nil)
	if err != nil {
		log.Fatal(err)
	}
	var last *client.Job
	err = c.Watch(ctx, id, func(j *client.Job) error {
		last = j
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(last.GetName(), last.GetState())
	// Output: watched succeeded
}
