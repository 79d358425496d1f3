package spec

import (
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"
)

var logsFields = []string{"destination"}

// logs reads the job's `logs:` mapping: its destination, an object-store
// URL (s3://bucket/prefix/ with optional query parameters) where the job's
// logs are copied when it ends.
func (c *compiler) logs(n *yaml.Node) string {
	ps, ok := c.mapping(jobLoc, "logs", n)
	if !ok {
		return ""
	}
	dest := ""
	for _, p := range ps {
		switch p.key {
		case "destination":
			s, ok := c.scalar(jobLoc, "logs.destination", p.v)
			if !ok {
				continue
			}
			if why := checkDestination(s); why != "" {
				c.e.add(jobLoc, p.v.Line, "logs.destination", nil, "%q %s", s, why)
				continue
			}
			dest = s
		default:
			c.unknownField(jobLoc, "logs.", p, logsFields)
		}
	}
	return dest
}

// checkDestination says what is wrong with a log destination URL, or "".
func checkDestination(s string) string {
	if bad := text(s); bad != "" || len(s) > 2048 {
		return "is not a URL"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL: " + err.Error()
	case u.Scheme != "s3":
		return "must be an s3:// URL (s3://bucket/prefix/)"
	case u.Host == "":
		return "names no bucket (s3://bucket/prefix/)"
	case u.User != nil:
		return "must not carry credentials: an admin sets the team's credentials (haul team logs set)"
	case strings.Contains(u.Path, "//") || strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/.."):
		return "has an empty or '..' path part"
	}
	return ""
}
