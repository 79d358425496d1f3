package kubee2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/haul-dev/haul/internal/blob/s3"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/s3test"
)

// TestLogsOnS3 runs worker pods whose logs go to a real S3 server (MinIO)
// with credentials from a Secret, and no shared volume: a finished task's
// log reads back whole, a running task's output is readable while it
// runs, and after its pod is deleted mid-task (its node gone) the lost
// attempt's log is what it printed, marked incomplete.
func TestLogsOnS3(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "haul-logs")
	a := startSite(t, "a", true)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "haul-s3", Namespace: workerNS}, StringData: map[string]string{}}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		secret.StringData[k] = v
	}
	if _, err := a.cluster.Clientset().CoreV1().Secrets(workerNS).Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The server's own handle, with explicit credentials (the test's
	// environment has none); worker pods get theirs from the Secret.
	bs, err := s3.New(context.Background(), srv.Options("haul-logs"))
	if err != nil {
		t.Fatal(err)
	}
	d := deployWith(t, deployOptions{blob: bucket, envSecret: "haul-s3", blobStore: bs}, a)
	id := d.submit(t, `
name: s3-logs
retries: 0
tasks:
  - key: chatty
    command: [sh, -c, 'i=0; while [ $i -lt 500 ]; do echo "chatty $i"; i=$((i+1)); done']
  - key: victim
    command: [sh, -c, 'if [ "$HAUL_ATTEMPT" = 1 ]; then echo "before the node went"; sleep 120; fi; echo "attempt $HAUL_ATTEMPT"']
`)
	var want strings.Builder
	for i := range 500 {
		fmt.Fprintf(&want, "chatty %d\n", i)
	}
	s, pod := d.runningPod(t, id, "victim", 1)
	p, err := s.cluster.Clientset().CoreV1().Pods(workerNS).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir == nil {
			t.Fatalf("worker pod mounts volume %s (%+v): want only emptyDirs with an s3:// log store", v.Name, v.VolumeSource)
		}
	}
	waitFor(t, 30e9, "the running attempt's output", func() bool {
		out, _, _ := d.logs(t, id, "victim", 1)
		return out == "before the node went\n"
	})
	if err := s.cluster.Clientset().CoreV1().Pods(workerNS).Delete(context.Background(), pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if j := d.waitJob(t, id); j.State != "succeeded" {
		t.Fatalf("job %s %v", j.State, j.Counts)
	}
	if out, _, err := d.logs(t, id, "chatty", 0); err != nil || out != want.String() {
		t.Fatalf("chatty: %d bytes (want %d), %v", len(out), want.Len(), err)
	}
	out, _, err := d.logs(t, id, "victim", 1)
	if ce := new(connect.Error); out != "before the node went\n" || err == nil || !strings.Contains(err.Error(), "log incomplete") || !strings.Contains(err.Error(), "lost") {
		t.Fatalf("lost attempt: %q, %v (%v), want what it printed, then DataLoss naming the loss", out, err, ce)
	}
	if out, _, err := d.logs(t, id, "victim", 2); err != nil || out != "attempt 2\n" {
		t.Fatalf("retry: %q, %v", out, err)
	}
	d.noPodsLeft(t)
}

// logs reads an attempt's log through the API: stdout, stderr, and the
// stream's error (DataLoss for an incomplete log).
func (d *deployment) logs(t *testing.T, job, key string, attempt int32) (string, string, error) {
	t.Helper()
	st, err := d.api.GetLogs(context.Background(), connect.NewRequest(&apiv1.GetLogsRequest{JobId: job, Key: key, Attempt: attempt}))
	if err != nil {
		return "", "", err
	}
	var out, errOut strings.Builder
	for st.Receive() {
		for _, c := range st.Msg().Chunks {
			if c.Stream == apiv1.LogStream_LOG_STREAM_STDERR {
				errOut.Write(c.Data)
			} else {
				out.Write(c.Data)
			}
		}
	}
	return out.String(), errOut.String(), st.Err()
}
