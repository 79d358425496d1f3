package auth

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Role is what a caller may do within one team. Roles are ordered: each
// includes every role below it.
type Role int

const (
	RoleNone Role = iota
	RoleViewer
	RoleMember
	RoleAdmin
)

var roleNames = []string{"none", "viewer", "member", "admin"}

func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return roleNames[r]
}

// ParseRole reads a role name: viewer, member or admin.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames[1:] {
		if s == n {
			return Role(i + 1), nil
		}
	}
	return RoleNone, fmt.Errorf("role %q: want viewer, member or admin", s)
}

// Kind says what sort of caller an identity is.
type Kind string

const (
	KindUser           Kind = "user"
	KindServiceAccount Kind = "service-account"
	KindTask           Kind = "task"
)

// Identity is who makes a call, as its token proves.
type Identity struct {
	// Subject names the caller for records (audit, jobs' submitted_by):
	// "alice@example.com", "ci-nightly", "task:<job>/<key>#<attempt>".
	Subject string
	Kind    Kind
	// Teams maps each team the caller belongs to to its role there.
	Teams map[string]Role
	// PlatformAdmin may do everything in every team.
	PlatformAdmin bool
	// For a task: the job, task key and attempt its token is scoped to.
	Job     string
	Task    string
	Attempt int32
	// TokenID names the issued token that proved it ("" otherwise), so that
	// audit records say which token acted.
	TokenID string
	// Via says how the identity was proved: "token", "oidc", "task".
	Via string
}

// Role returns the identity's role in team.
func (id *Identity) Role(team string) Role {
	if id == nil {
		return RoleNone
	}
	if id.PlatformAdmin {
		return RoleAdmin
	}
	return id.Teams[team]
}

// TeamNames returns the teams the identity belongs to, sorted.
func (id *Identity) TeamNames() []string {
	if id == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(id.Teams))
}

// String describes the identity for messages: "alice@example.com (user)".
func (id *Identity) String() string {
	if id == nil {
		return "anonymous"
	}
	return fmt.Sprintf("%s (%s)", id.Subject, id.Kind)
}

// Action is something a caller asks to do.
type Action string

const (
	ReadJob      Action = "read"         // jobs, tasks, attempts, logs
	SubmitJob    Action = "submit"       // submit a job to a team
	CancelJob    Action = "cancel"       // cancel a job or a task
	RetryJob     Action = "retry"        // retry failed tasks, rerun
	AddTasks     Action = "add-tasks"    // add tasks to a running job
	ManageTokens Action = "tokens"       // issue, list and revoke a team's tokens
	ReadAudit    Action = "audit"        // the audit log (platform)
	ManageFleet  Action = "fleet"        // clusters, quotas (platform)
	ReadTeam     Action = "read-team"    // a team's quota and usage
	ManageQuota  Action = "quota"        // set quotas (platform)
	AdminAll     Action = "admin-tokens" // issue tokens naming any team (platform)
)

// needs is the least role an action needs within the object's team;
// platform-only actions are not here.
var needs = map[Action]Role{
	ReadJob:      RoleViewer,
	ReadTeam:     RoleViewer,
	SubmitJob:    RoleMember,
	CancelJob:    RoleMember,
	RetryJob:     RoleMember,
	AddTasks:     RoleMember,
	ManageTokens: RoleAdmin,
}

// platformOnly are actions only platform admins may take.
var platformOnly = map[Action]bool{ReadAudit: true, ManageFleet: true, ManageQuota: true, AdminAll: true}

// ErrDenied is wrapped by every refusal of Allow.
var ErrDenied = errors.New("permission denied")

// ErrUnauthenticated is returned when a call carries no valid credential.
var ErrUnauthenticated = errors.New("unauthenticated")

// Object is what an action is taken on: a team, and for job actions the job.
type Object struct {
	Team string
	Job  string
}

// Allow reports whether id may take action on obj: nil, or an error
// wrapping ErrDenied that names the caller, the action and what it lacks.
// A task's token allows reading its own job and adding tasks to it, and
// nothing else.
func Allow(id *Identity, action Action, obj Object) error {
	if id == nil {
		return fmt.Errorf("%w: no identity", ErrUnauthenticated)
	}
	if id.Kind == KindTask {
		if (action == ReadJob || action == AddTasks) && obj.Job != "" && obj.Job == id.Job {
			return nil
		}
		return fmt.Errorf("%w: a task's token (%s) may only read its own job %s and add tasks to it, not %s on %s", ErrDenied, id.Subject, id.Job, action, describe(obj))
	}
	if id.PlatformAdmin {
		return nil
	}
	if platformOnly[action] {
		return fmt.Errorf("%w: %s is not a platform admin (%s needs one)", ErrDenied, id, action)
	}
	need, ok := needs[action]
	if !ok {
		return fmt.Errorf("%w: unknown action %q", ErrDenied, action)
	}
	have := id.Teams[obj.Team]
	if have >= need {
		return nil
	}
	if have == RoleNone {
		return fmt.Errorf("%w: %s is not in team %q (%s on %s needs %s)", ErrDenied, id, obj.Team, action, describe(obj), need)
	}
	return fmt.Errorf("%w: %s is %s of team %q; %s on %s needs %s", ErrDenied, id, have, obj.Team, action, describe(obj), need)
}

// Visible reports whether id may see objects of team at all (lists filter
// with it).
func Visible(id *Identity, team string) bool {
	return id != nil && (id.PlatformAdmin || id.Kind != KindTask && id.Teams[team] >= RoleViewer)
}

func describe(o Object) string {
	if o.Job != "" {
		return fmt.Sprintf("job %s of team %q", o.Job, o.Team)
	}
	return fmt.Sprintf("team %q", o.Team)
}

// ParseTeams reads "team=role,team2=role" (role defaults to member).
func ParseTeams(s string) (map[string]Role, error) {
	out := map[string]Role{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		team, role, hasRole := strings.Cut(part, "=")
		r := RoleMember
		if hasRole {
			var err error
			if r, err = ParseRole(role); err != nil {
				return nil, fmt.Errorf("team %q: %w", team, err)
			}
		}
		if err := CheckTeamName(team); err != nil {
			return nil, err
		}
		out[team] = r
	}
	return out, nil
}

// CheckTeamName checks a team (namespace) name: 1-63 lowercase letters,
// digits and dashes, starting with a letter.
func CheckTeamName(s string) error {
	if len(s) == 0 || len(s) > 63 {
		return fmt.Errorf("team %q: want 1 to 63 characters", s)
	}
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' && i > 0 || c == '-' && i > 0) {
			return fmt.Errorf("team %q: want lowercase letters, digits and dashes, starting with a letter", s)
		}
	}
	return nil
}
