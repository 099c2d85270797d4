package fleet

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/nats-io/nats-server/v2/server"
)

// Permissions are the subjects one RipTrace role may publish and subscribe
// to: everything else is refused by the NATS server. The layout:
//
//   - an agent serves only its own host's requests, publishes only its own
//     host's hits and watermarks, asks the server's clock, writes only its own host's status and heartbeat keys, and
//     reads the declared tracepoints;
//   - an editor or CLI user sends requests to agents, declares and removes
//     tracepoints, reads hits, status and heartbeats, and can neither answer
//     as an agent nor publish hits.
//
// Creating the hit stream and the buckets is left to `riptrace server` (or
// an admin user): the roles only look them up.
//
// Replies (to requests, JetStream API calls, and the deliveries of
// consumers) come back on the connection's inbox. As returned by
// EditorPermissions and AgentPermissions, every user receives them under
// the shared _INBOX: a user may then subscribe to the replies of all the
// others. WithInbox gives each user its own prefix instead, as AuthConfig
// does; its clients must then use it (--inbox-prefix).
type Permissions struct {
	Publish   []string
	Subscribe []string
	// Responses lets the user answer the requests it receives, once each,
	// on the requester's reply subject.
	Responses bool
}

// inbox is where nats.go receives replies, JetStream acknowledgements and
// consumer deliveries, unless the connection has its own inbox prefix.
const inbox = "_INBOX.>"

// UserInboxPrefix is the inbox prefix the layout gives a user (AuthConfig,
// and the fix a refused reply subscription suggests): _INBOX_ and the
// user's name as one subject token, so that no user's prefix is a subject
// under another's. An nkey user's name is its public key.
func UserInboxPrefix(user string) string { return "_INBOX_" + Token(user) }

// CheckInboxPrefix says what is wrong with an inbox prefix a client is
// given, if anything: it is one or more subject tokens, without wildcards.
func CheckInboxPrefix(prefix string) error {
	why := ""
	switch {
	case prefix == "":
		why = "it is empty"
	case strings.ContainsAny(prefix, "*>"):
		why = "it has a wildcard (* or >)"
	case strings.ContainsFunc(prefix, unicode.IsSpace):
		why = "it has white space"
	case slices.Contains(strings.Split(prefix, "."), ""):
		why = "it has an empty token (a leading, trailing or double '.')"
	default:
		return nil
	}
	return fmt.Errorf("inbox prefix %q: %s; give the prefix the server's permissions let this user subscribe under, such as %s (the layout of fleet.AuthConfig gives each user _INBOX_<user>)", prefix, why, UserInboxPrefix("editor"))
}

func (s Subjects) kv(bucket string) string { return "KV_" + bucket }

// lookup lets a role find the stream and buckets (Connect binds them).
func (s Subjects) lookup() []string {
	var subs []string
	for _, name := range []string{s.HitStream(), s.kv(s.TracepointBucket()), s.kv(s.StatusBucket()), s.kv(s.HostBucket())} {
		subs = append(subs, "$JS.API.STREAM.INFO."+name)
	}
	return subs
}

// read lets a role read a stream through ordered consumers, key-value
// watches, key listings and direct gets.
func read(stream string) []string {
	return []string{
		"$JS.API.CONSUMER.CREATE." + stream + ".>",
		"$JS.API.CONSUMER.MSG.NEXT." + stream + ".>",
		"$JS.API.CONSUMER.INFO." + stream + ".>",
		"$JS.API.CONSUMER.DELETE." + stream + ".>",
		"$JS.API.DIRECT.GET." + stream + ".>",
		"$JS.FC." + stream + ".>",
	}
}

// AgentPermissions are the permissions of the agent of host (a name as
// given to `riptrace agent --host`).
func (s Subjects) AgentPermissions(host string) Permissions {
	h := Token(host)
	pub := []string{
		s.Trace(h, "*"),
		s.Watermark(h, "*"),
		s.Clock(),
		"$KV." + s.StatusBucket() + ".*." + h + ".*", // StatusKey(tracepoint, host, pid)
		"$KV." + s.HostBucket() + "." + h,
	}
	pub = append(pub, s.lookup()...)
	pub = append(pub, read(s.kv(s.TracepointBucket()))...)
	return Permissions{
		Publish:   pub,
		Subscribe: []string{s.ProfileGet(h), s.Attach(h), s.CreateTracepoint(h), s.ClearTracepoint(h), inbox},
		Responses: true,
	}
}

// EditorPermissions are the permissions of the debug adapter, the language
// server and the CLI.
func (s Subjects) EditorPermissions() Permissions {
	pub := []string{
		s.ProfileGet("*"), s.Attach("*"), s.CreateTracepoint("*"), s.ClearTracepoint("*"),
		"$KV." + s.TracepointBucket() + ".>",
	}
	pub = append(pub, s.lookup()...)
	for _, stream := range []string{s.HitStream(), s.kv(s.TracepointBucket()), s.kv(s.StatusBucket()), s.kv(s.HostBucket())} {
		pub = append(pub, read(stream)...)
	}
	return Permissions{Publish: pub, Subscribe: []string{inbox}}
}

// Server converts p for nats-server's options.
func (p Permissions) Server() *server.Permissions {
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.Publish},
		Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
	}
	if p.Responses {
		sp.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
	}
	return sp
}

// AuthUser is one user of a generated nats-server configuration.
type AuthUser struct {
	Name string
	// Password is written as given: a "$VARIABLE" (taken from the
	// environment when the server loads the file), a bcrypt hash, or text.
	Password string
	// Nkey is the user's public nkey, in place of Name and Password.
	Nkey string
	// Host makes the user the agent of that host; empty makes it an editor.
	Host string
	// InboxPrefix is the only reply subject prefix the user may subscribe
	// to, so that it cannot read the replies and hits delivered to others;
	// its clients must use it (--inbox-prefix, nats.go's
	// CustomInboxPrefix). Empty means UserInboxPrefix of Name, or of Nkey
	// for an nkey user. "_INBOX" gives the user the shared inbox of every
	// client that has no prefix of its own: it can read everyone's replies.
	InboxPrefix string
}

// inboxPrefix is the inbox prefix the layout gives u.
func (u AuthUser) inboxPrefix() string {
	switch {
	case u.InboxPrefix != "":
		return u.InboxPrefix
	case u.Nkey != "":
		return UserInboxPrefix(u.Nkey)
	}
	return UserInboxPrefix(u.Name)
}

// WithInbox returns p with replies received under prefix instead of _INBOX.
func (p Permissions) WithInbox(prefix string) Permissions {
	if prefix == "" {
		return p
	}
	sub := make([]string, len(p.Subscribe))
	for i, s := range p.Subscribe {
		if s == inbox {
			s = prefix + ".>"
		}
		sub[i] = s
	}
	p.Subscribe = sub
	return p
}

// AuthConfig renders an `authorization` block for a nats-server
// configuration file giving each user its role's permissions, and its own
// inbox prefix (AuthUser.InboxPrefix), which its clients must use. Users
// whose names differ only in characters Token replaces would share one:
// give them distinct InboxPrefixes.
func (s Subjects) AuthConfig(users []AuthUser) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users: [\n")
	for _, u := range users {
		role, p := "editor and CLI", s.EditorPermissions()
		if u.Host != "" {
			role, p = "agent of host "+Token(u.Host), s.AgentPermissions(u.Host)
		}
		prefix := u.inboxPrefix()
		p = p.WithInbox(prefix)
		fmt.Fprintf(&b, "    # %s; its clients run with --inbox-prefix %s\n    {\n", role, prefix)
		if u.Nkey != "" {
			fmt.Fprintf(&b, "      nkey: %s\n", u.Nkey)
		} else {
			fmt.Fprintf(&b, "      user: %q\n      password: %s\n", u.Name, confValue(u.Password))
		}
		b.WriteString("      permissions: {\n")
		writeList(&b, "publish", p.Publish)
		writeList(&b, "subscribe", p.Subscribe)
		if p.Responses {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func writeList(b *strings.Builder, name string, subjects []string) {
	fmt.Fprintf(b, "        %s: {\n          allow: [\n", name)
	for _, s := range subjects {
		fmt.Fprintf(b, "            %q\n", s)
	}
	b.WriteString("          ]\n        }\n")
}

// confValue quotes v unless it is a variable reference.
func confValue(v string) string {
	if strings.HasPrefix(v, "$") && !strings.ContainsAny(v, " \t\"") {
		return v
	}
	return fmt.Sprintf("%q", v)
}
