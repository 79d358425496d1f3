package spec

import (
	"reflect"
	"slices"
	"testing"
)

func TestKubernetesFields(t *testing.T) {
	t.Parallel()
	j := compile(t, `
name: k
kubernetes:
  image: registry.example/sim:1.2
  service_account: sim-runner
  env: {REGION: eu}
  volumes:
    - {name: data, persistentVolumeClaim: {claimName: scenes}}
  volume_mounts:
    - {name: data, mountPath: /data, readOnly: true}
workers:
  - name: small
  - name: gpu
    gpu: 1
    node_selector: {cloud.example/gpu-type: a100}
    tolerations:
      - {key: spot, operator: Exists, effect: NoSchedule}
      - {key: gpu, value: "yes"}
tasks:
  - {key: a, command: [true]}
`)
	want := &Kubernetes{
		Image: "registry.example/sim:1.2", ServiceAccount: "sim-runner", Env: map[string]string{"REGION": "eu"},
		Volumes:      [][]byte{[]byte(`{"name":"data","persistentVolumeClaim":{"claimName":"scenes"}}`)},
		VolumeMounts: [][]byte{[]byte(`{"mountPath":"/data","name":"data","readOnly":true}`)},
	}
	if !reflect.DeepEqual(j.Kubernetes, want) {
		t.Errorf("kubernetes = %+v\nwant %+v", j.Kubernetes, want)
	}
	gpu := j.Workers[1]
	if gpu.NodeSelector["cloud.example/gpu-type"] != "a100" || len(gpu.NodeSelector) != 1 {
		t.Errorf("node selector = %v", gpu.NodeSelector)
	}
	wantTol := []Toleration{{Key: "spot", Operator: "Exists", Effect: "NoSchedule"}, {Key: "gpu", Value: "yes"}}
	if !slices.Equal(gpu.Tolerations, wantTol) {
		t.Errorf("tolerations = %+v, want %+v", gpu.Tolerations, wantTol)
	}
}

func TestKubernetesErrors(t *testing.T) {
	t.Parallel()
	got := errLines(t, `
name: k
kubernetes:
  imag: x
  service_account: Bad_Name
  volumes:
    - {persistentVolumeClaim: {claimName: scenes}}
  volume_mounts:
    - {name: data}
workers:
  - name: small
    node_selector: {"bad key!": x}
    tolerations:
      - {key: spot, operator: Maybe, effect: Sometimes}
      - {key: spot, operator: Exists, value: "1"}
tasks:
  - {key: a, command: [true]}
`, Limits{})
	want := []string{
		`job.yaml:4: field kubernetes.imag: unknown field (did you mean "image"?)`,
		`job.yaml:5: field kubernetes.service_account: "Bad_Name" is not a valid service account name: lowercase letters, digits, '-' and '.'`,
		`job.yaml:7: field kubernetes.volumes[0].name: is required (a string)`,
		`job.yaml:9: field kubernetes.volume_mounts[0].mountPath: is required (a string)`,
		`job.yaml:12: field workers[0].node_selector.bad key!: bad label name "bad key!": use at most 63 letters, digits, '-', '_', '.' and '/', starting and ending with a letter or digit`,
		`job.yaml:14: field workers[0].tolerations[0].operator: "Maybe": want Exists or Equal`,
		`job.yaml:14: field workers[0].tolerations[0].effect: "Sometimes": want NoSchedule, PreferNoSchedule or NoExecute (or leave it out for all)`,
		`job.yaml:15: field workers[0].tolerations[1].value: must be empty with operator Exists`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", joinLines(got), joinLines(want))
	}
}

func joinLines(l []string) string {
	s := ""
	for _, x := range l {
		s += x + "\n"
	}
	return s
}
