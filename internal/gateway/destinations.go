package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/blob/s3"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/logarchive"
	"github.com/haul-dev/haul/internal/store"
)

// logDestination returns where a new job's logs are copied when it ends:
// the destination its spec names, which must be within its team's, or
// else the team's own; "" when the team has none. A job cannot name a
// destination for a team without one: the team's credentials write it,
// and no job may send its logs where its team has not agreed to.
func (g *Gateway) logDestination(ctx context.Context, team, asked string) (string, error) {
	d, err := g.cfg.Store.GetLogDestination(ctx, team)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if asked != "" {
			return "", connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("logs.destination %s: team %q has no log destination; an admin sets one first (haul team logs set %s s3://bucket/prefix/ …)", asked, team, team))
		}
		return "", nil
	case err != nil:
		return "", storeError(err, "team", team)
	case asked == "":
		return d.URL, nil
	}
	if err := logarchive.Within(d.URL, asked); err != nil {
		return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("logs.destination: %w", err))
	}
	return asked, nil
}

// destinationStore is what the log destination calls need of the store.
type destinationStore interface {
	store.LogDestinationStore
}

func (a *Admin) destinations() (destinationStore, error) {
	ds, ok := a.st.(destinationStore)
	if !ok {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this server's store keeps no log destinations"))
	}
	return ds, nil
}

func destinationProto(d store.LogDestination) *apiv1.LogDestination {
	return &apiv1.LogDestination{Team: d.Team, Url: d.URL, AccessKeyId: d.AccessKeyID, HasSecret: d.SecretAccessKey != "", UpdatedUnixNanos: d.UpdatedAt.UnixNano()}
}

// SetLogDestination sets a team's log destination and its credentials.
func (a *Admin) SetLogDestination(ctx context.Context, req *connect.Request[apiv1.SetLogDestinationRequest]) (*connect.Response[apiv1.SetLogDestinationResponse], error) {
	m := req.Msg
	var teams []string
	var object string
	if auth.CheckTeamName(m.Team) == nil {
		teams, object = []string{m.Team}, "log-destination/"+m.Team
	}
	d := store.LogDestination{Team: m.Team, URL: m.Url, AccessKeyID: m.AccessKeyId, SecretAccessKey: m.SecretAccessKey, SessionToken: m.SessionToken, UpdatedAt: a.clock().UTC()}
	err := a.fleetChange(ctx, req.Peer().Addr, "SetLogDestination", auth.ManageFleet, teams, object,
		func() error {
			if err := auth.CheckTeamName(m.Team); err != nil {
				return fmt.Errorf("team: %w", err)
			}
			if _, err := s3.ParseURL(m.Url); err != nil {
				return fmt.Errorf("url: %w", err)
			}
			if (m.AccessKeyId == "") != (m.SecretAccessKey == "") {
				return errors.New("give both an access key ID and a secret access key, or neither (the servers' own credentials)")
			}
			return nil
		},
		func(fleetStore) (string, error) {
			ds, err := a.destinations()
			if err != nil {
				return "", err
			}
			if err := ds.PutLogDestination(ctx, d); err != nil {
				return "", storeErrorCode(err, "log destination of team", m.Team, connect.CodeInvalidArgument)
			}
			// The audit names the URL and key ID, never the secret.
			return fmt.Sprintf("%s (key %s)", d.URL, cmp.Or(d.AccessKeyID, "the servers' own")), nil
		})
	if err != nil {
		return nil, err
	}
	a.log.Info("log destination set", "team", m.Team, "url", m.Url, "by", auth.FromContext(ctx).Subject)
	return connect.NewResponse(&apiv1.SetLogDestinationResponse{Destination: destinationProto(d)}), nil
}

// GetLogDestinations lists teams' destinations, without secrets.
func (a *Admin) GetLogDestinations(ctx context.Context, req *connect.Request[apiv1.GetLogDestinationsRequest]) (*connect.Response[apiv1.GetLogDestinationsResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	if err := checkReadTeam(id, req.Msg.Team); err != nil {
		return nil, err
	}
	ds, err := a.destinations()
	if err != nil {
		return nil, err
	}
	all, err := ds.ListLogDestinations(ctx)
	if err != nil {
		return nil, storeError(err, "log destinations", "")
	}
	resp := &apiv1.GetLogDestinationsResponse{}
	for _, d := range all {
		if req.Msg.Team != "" && d.Team != req.Msg.Team {
			continue
		}
		if auth.Allow(id, auth.ReadTeam, auth.Object{Team: d.Team}) != nil {
			continue
		}
		resp.Destinations = append(resp.Destinations, destinationProto(d))
	}
	return connect.NewResponse(resp), nil
}

// DeleteLogDestination removes a team's destination.
func (a *Admin) DeleteLogDestination(ctx context.Context, req *connect.Request[apiv1.DeleteLogDestinationRequest]) (*connect.Response[apiv1.DeleteLogDestinationResponse], error) {
	team := req.Msg.Team
	var teams []string
	var object string
	if auth.CheckTeamName(team) == nil {
		teams, object = []string{team}, "log-destination/"+team
	}
	err := a.fleetChange(ctx, req.Peer().Addr, "DeleteLogDestination", auth.ManageFleet, teams, object,
		func() error {
			if err := auth.CheckTeamName(team); err != nil {
				return fmt.Errorf("team: %w", err)
			}
			return nil
		},
		func(fleetStore) (string, error) {
			ds, err := a.destinations()
			if err != nil {
				return "", err
			}
			if err := ds.DeleteLogDestination(ctx, team); err != nil {
				return "", storeErrorCode(err, "log destination of team", team, connect.CodeInvalidArgument)
			}
			return "deleted", nil
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.DeleteLogDestinationResponse{}), nil
}
