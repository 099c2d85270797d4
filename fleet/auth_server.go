package fleet

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// StartServerOptions starts an embedded nats-server from opts (a nats-server
// configuration file's, typically, with users and permissions), waits until
// it accepts connections, and creates the hit stream and buckets.
//
// The stream and buckets are created over an in-process connection. When
// opts has users, that connection authenticates as a user added here: an
// nkey whose seed never leaves this process, allowed in-process connections
// only and only the JetStream API, in the account of the first configured
// user. In operator (JWT) mode no such user can be added: the first client
// allowed to create them does, and no clock is served (agents' hits are
// then placed in the timeline by their arrival, marked uncertain).
func StartServerOptions(ctx context.Context, opts *server.Options, prefix string) (*Server, error) {
	opts.JetStream = opts.JetStream || len(opts.LeafNode.Remotes) == 0
	return startServer(ctx, opts, prefix, 0)
}

// setupLogin returns how the server's own connection logs in, adding a user
// to opts if needed, or nil if it cannot (operator mode).
func setupLogin(opts *server.Options, prefix string) ([]nats.Option, error) {
	switch {
	case len(opts.TrustedOperators) > 0 || len(opts.TrustedKeys) > 0:
		return nil, nil
	case len(opts.Users) > 0 || len(opts.Nkeys) > 0:
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, fmt.Errorf("creating the server's setup user: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, err
		}
		var acc *server.Account
		if len(opts.Users) > 0 {
			acc = opts.Users[0].Account
		} else {
			acc = opts.Nkeys[0].Account
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{
			Nkey:    pub,
			Account: acc,
			Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{"$JS.API.>"}},
				// Its own inbox: no other user's replies; and the
				// clock, which it answers.
				Subscribe: &server.SubjectPermission{Allow: []string{UserInboxPrefix(pub) + ".>", NewSubjects(prefix).Clock()}},
				Response:  &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION},
			},
			AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}},
		})
		return []nats.Option{nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix(UserInboxPrefix(pub))}, nil
	case opts.Username != "":
		if strings.HasPrefix(opts.Password, "$2") {
			return nil, fmt.Errorf("the configuration's single user has a bcrypt password, which RipTrace cannot log in with to create its stream and buckets: use a users list (authorization { users: [...] })")
		}
		return []nats.Option{nats.UserInfo(opts.Username, opts.Password)}, nil
	case opts.Authorization != "":
		if strings.HasPrefix(opts.Authorization, "$2") {
			return nil, fmt.Errorf("the configuration's token is a bcrypt hash, which RipTrace cannot log in with to create its stream and buckets: use a users list (authorization { users: [...] })")
		}
		return []nats.Option{nats.Token(opts.Authorization)}, nil
	}
	return []nats.Option{}, nil
}
