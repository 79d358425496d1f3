package autoscale

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/haul-dev/haul/internal/spec"
)

// FileConfig is the autoscaler's configuration file (YAML or JSON), as
// documented in docs/autoscaler.md.
type FileConfig struct {
	Strategy        string         `yaml:"strategy"`
	Interval        string         `yaml:"interval"`
	ScaleDownGrace  string         `yaml:"scale_down_grace"`
	CapacityBackoff string         `yaml:"capacity_backoff"`
	Limits          FileLimits     `yaml:"limits"`
	Provider        FileProvider   `yaml:"provider"`
	LaunchConfigs   []FileLaunch   `yaml:"launch_configs"`
	Kubernetes      FileKubernetes `yaml:"kubernetes"`
}

// FileLimits are the global limits.
type FileLimits struct {
	MaxNodes             int     `yaml:"max_nodes"`
	MaxSpendPerHour      float64 `yaml:"max_spend_per_hour"`
	MaxAddPerInterval    int     `yaml:"max_add_per_interval"`
	MaxRemovePerInterval int     `yaml:"max_remove_per_interval"`
}

// FileProvider selects and configures the cloud.
type FileProvider struct {
	// Type is "aws" or "sim" (launches are Node objects in the cluster:
	// for tests and demonstrations).
	Type string    `yaml:"type"`
	AWS  *FileAWS  `yaml:"aws"`
	Sim  *FileSimN `yaml:"sim"`
}

// FileAWS configures the aws provider.
type FileAWS struct {
	Region                string            `yaml:"region"`
	Endpoint              string            `yaml:"endpoint"`
	LaunchTemplates       map[string]string `yaml:"launch_templates"`
	DefaultLaunchTemplate string            `yaml:"default_launch_template"`
	PriceTable            string            `yaml:"price_table"`
	Tags                  map[string]string `yaml:"tags"`
}

// FileSimN configures the sim provider.
type FileSimN struct {
	// BootDelay before a launched Node becomes Ready.
	BootDelay string `yaml:"boot_delay"`
}

// FileKubernetes says where the cluster is and which pods are workers.
type FileKubernetes struct {
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	// WorkerSelector selects worker pods (default "haul.dev/worker": every pod with the label, whatever the worker ID).
	WorkerSelector string `yaml:"worker_selector"`
	// ConfigLabel is the node label naming its launch config (default
	// "haul.dev/launch-config").
	ConfigLabel string `yaml:"config_label"`
}

// FileLaunch is one launch config.
type FileLaunch struct {
	Name                 string            `yaml:"name"`
	InstanceType         string            `yaml:"instance_type"`
	Zone                 string            `yaml:"zone"`
	Purchase             string            `yaml:"purchase"`
	Capacity             FileResources     `yaml:"capacity"`
	PricePerHour         float64           `yaml:"price_per_hour"`
	Reserved             bool              `yaml:"reserved"`
	Labels               map[string]string `yaml:"labels"`
	Taints               []Taint           `yaml:"taints"`
	MaxNodes             int               `yaml:"max_nodes"`
	MaxSpendPerHour      float64           `yaml:"max_spend_per_hour"`
	MaxAddPerInterval    int               `yaml:"max_add_per_interval"`
	MaxRemovePerInterval int               `yaml:"max_remove_per_interval"`
}

// FileResources is a capacity with Kubernetes-style quantities.
type FileResources struct {
	CPU     string `yaml:"cpu"`
	Memory  string `yaml:"memory"`
	GPU     int32  `yaml:"gpu"`
	GPUType string `yaml:"gpu_type"`
}

// LoadConfig reads an autoscaler configuration file and returns the
// planner's Config with the file's other sections.
func LoadConfig(path string) (Config, *FileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("autoscaler config: %w", err)
	}
	return ParseConfig(data, path)
}

// ParseConfig parses an autoscaler configuration; name is used in errors.
// Every problem is reported, each naming its field.
func ParseConfig(data []byte, name string) (Config, *FileConfig, error) {
	var fc FileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", name, field, fmt.Sprintf(format, args...)))
	}
	dur := func(field, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			bad(field, "bad duration %q (want e.g. 30s, 10m)", s)
		}
		return d
	}
	cfg := Config{
		Strategy:        fc.Strategy,
		Interval:        dur("interval", fc.Interval),
		ScaleDownGrace:  dur("scale_down_grace", fc.ScaleDownGrace),
		CapacityBackoff: dur("capacity_backoff", fc.CapacityBackoff),
		Limits: Limits{
			MaxNodes: fc.Limits.MaxNodes, MaxSpendPerHour: fc.Limits.MaxSpendPerHour,
			MaxAddPerInterval: fc.Limits.MaxAddPerInterval, MaxRemovePerInterval: fc.Limits.MaxRemovePerInterval,
		},
	}
	switch fc.Provider.Type {
	case "aws":
		if fc.Provider.AWS == nil {
			bad("provider.aws", "required when provider.type is aws")
		}
	case "sim":
		if fc.Provider.Sim != nil {
			dur("provider.sim.boot_delay", fc.Provider.Sim.BootDelay)
		}
	case "":
		bad("provider.type", "required: aws or sim")
	default:
		bad("provider.type", "unknown provider %q (want aws or sim)", fc.Provider.Type)
	}
	if len(fc.LaunchConfigs) == 0 {
		bad("launch_configs", "at least one launch config is required")
	}
	for i, l := range fc.LaunchConfigs {
		field := fmt.Sprintf("launch_configs[%d] (%s)", i, l.Name)
		lc := LaunchConfig{
			Name: l.Name, InstanceType: l.InstanceType, Zone: l.Zone, Purchase: Purchase(l.Purchase),
			PricePerHour: l.PricePerHour, Reserved: l.Reserved, Labels: l.Labels, Taints: l.Taints,
			MaxNodes: l.MaxNodes, MaxSpendPerHour: l.MaxSpendPerHour,
			MaxAddPerInterval: l.MaxAddPerInterval, MaxRemovePerInterval: l.MaxRemovePerInterval,
		}
		switch lc.Purchase {
		case "":
			lc.Purchase = OnDemand
		case OnDemand, Spot:
		default:
			bad(field+".purchase", "unknown purchase option %q (want on-demand or spot)", l.Purchase)
		}
		if l.Capacity.CPU != "" {
			cpu, err := spec.ParseCPU(l.Capacity.CPU)
			if err != nil {
				bad(field+".capacity.cpu", "%v", err)
			}
			lc.Capacity.MilliCPU = int64(cpu * 1000)
		}
		if l.Capacity.Memory != "" {
			mem, err := spec.ParseBytes(l.Capacity.Memory)
			if err != nil {
				bad(field+".capacity.memory", "%v", err)
			}
			lc.Capacity.MemoryBytes = mem
		}
		lc.Capacity.GPU, lc.Capacity.GPUType = l.Capacity.GPU, l.Capacity.GPUType
		cfg.Configs = append(cfg.Configs, lc)
	}
	if len(errs) > 0 {
		return Config{}, nil, errors.Join(errs...)
	}
	// The planner checks the rest (names, capacities, prices, strategy).
	if _, err := NewPlanner(cfg); err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", name, err)
	}
	return cfg, &fc, nil
}
