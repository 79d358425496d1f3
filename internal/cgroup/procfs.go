package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// mount is one cgroup line of /proc/self/mountinfo.
type mount struct {
	root   string   // the mounted cgroup's path in its hierarchy ("/" unless namespaced or a bind mount)
	point  string   // where it is mounted
	fstype string   // "cgroup" or "cgroup2"
	opts   []string // super options: the v1 controllers ("memory", "cpu", ...) among others
}

// membership is one line of /proc/self/cgroup: "hierarchy-ID:controllers:path".
type membership struct {
	id          string
	controllers []string // empty for v2 (ID 0) and for named v1 hierarchies without controllers
	path        string
}

// parseMountInfo reads the cgroup and cgroup2 mounts from a mountinfo file
// (proc(5)): "ID parent major:minor root point options [optional...] -
// fstype source superoptions".
func parseMountInfo(r io.Reader) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if sep < 6 || sep+3 > len(fields) {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, line)
		}
		fstype := fields[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		var opts []string
		if sep+3 < len(fields) {
			opts = strings.Split(fields[sep+3], ",")
		}
		out = append(out, mount{
			root:   unescapeOctal(fields[3]),
			point:  unescapeOctal(fields[4]),
			fstype: fstype,
			opts:   opts,
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeOctal undoes mountinfo's escapes of space, tab, newline and
// backslash (\040, \011, \012, \134).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseProcCgroup reads /proc/<pid>/cgroup (cgroups(7)).
func parseProcCgroup(r io.Reader) ([]membership, error) {
	var out []membership
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || id == "" || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("/proc/self/cgroup line %d: malformed: %q", n, line)
		}
		m := membership{id: id, path: path}
		if ctrls != "" {
			m.controllers = strings.Split(ctrls, ",")
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	return out, nil
}

// hierarchy is where one hierarchy is mounted and where this process sits
// in it, as paths on this machine (under fsRoot).
type hierarchy struct {
	mount string // the mount point: the top this process can see
	own   string // this process's cgroup directory
}

// procView is what /proc/self says about this process's cgroups.
type procView struct {
	mounts  []mount
	members []membership
}

func readProcView(fsRoot string) (procView, error) {
	var v procView
	f, err := os.Open(filepath.Join(fsRoot, "proc/self/mountinfo"))
	if err != nil {
		return v, fmt.Errorf("read mounts: %w", err)
	}
	v.mounts, err = parseMountInfo(f)
	f.Close()
	if err != nil {
		return v, err
	}
	f, err = os.Open(filepath.Join(fsRoot, "proc/self/cgroup"))
	if err != nil {
		return v, fmt.Errorf("read own cgroups: %w", err)
	}
	v.members, err = parseProcCgroup(f)
	f.Close()
	return v, err
}

// v1 finds the v1 hierarchy that holds controller; ok is false when it is
// not mounted or this process is not listed in it.
func (v procView) v1(fsRoot, controller string) (hierarchy, bool) {
	i := slices.IndexFunc(v.members, func(m membership) bool {
		return m.id != "0" && slices.Contains(m.controllers, controller)
	})
	if i < 0 {
		return hierarchy{}, false
	}
	return v.resolve(fsRoot, v.members[i].path, func(m mount) bool {
		return m.fstype == "cgroup" && slices.Contains(m.opts, controller)
	})
}

// v2 finds the unified hierarchy.
func (v procView) v2(fsRoot string) (hierarchy, bool) {
	i := slices.IndexFunc(v.members, func(m membership) bool { return m.id == "0" && len(m.controllers) == 0 })
	if i < 0 {
		return hierarchy{}, false
	}
	return v.resolve(fsRoot, v.members[i].path, func(m mount) bool { return m.fstype == "cgroup2" })
}

// resolve maps a cgroup path to a directory through the mounts that match.
// A mount whose root is a prefix of the path is preferred; when the path
// does not exist under the mount (a cgroup namespace, or a container that
// sees only its own subtree), the mount point itself is the process's
// cgroup.
func (v procView) resolve(fsRoot, path string, match func(mount) bool) (hierarchy, bool) {
	var found []mount
	for _, m := range v.mounts {
		if match(m) {
			found = append(found, m)
		}
	}
	if len(found) == 0 {
		return hierarchy{}, false
	}
	best := found[0]
	rel, inside := relTo(best.root, path)
	for _, m := range found {
		if r, ok := relTo(m.root, path); ok {
			best, rel, inside = m, r, true
			break
		}
	}
	top := filepath.Join(fsRoot, best.point)
	own := top
	if inside {
		cand := filepath.Join(top, rel)
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			own = cand
		}
	}
	return hierarchy{mount: top, own: own}, true
}

// relTo returns path relative to root when root is path or an ancestor.
func relTo(root, path string) (string, bool) {
	root = strings.TrimSuffix(root, "/")
	if root == "" {
		return strings.TrimPrefix(path, "/"), true
	}
	if path == root {
		return "", true
	}
	if rest, ok := strings.CutPrefix(path, root+"/"); ok {
		return rest, true
	}
	return "", false
}
