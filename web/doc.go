// Package web is the riptrace server's web page (`riptrace server --ui
// ADDR`): an IDE-like view of the code the fleet runs, where a click on a
// line traces it on every process that runs it. cmd/riptrace starts it
// next to the embedded NATS server; it talks to the fleet only through a
// fleet.Client, like every other front end.
//
// The page is static (index.html and a CodeMirror 6 bundle built by esbuild
// from ui/, embedded); its data comes from the HTTP API under /api/. Every
// request there without a credential is answered 401 before routing,
// whatever the path: the bearer token, or the name and password of one of
// [Users] (HTTP basic, from an htpasswd file of bcrypt hashes). The
// credential travels only in the Authorization header, never in a cookie
// or a URL the server sees, and the server never sends a Basic challenge
// (a browser would then send the password by itself), so a page of another
// site cannot make the browser send it: that is what makes the
// state-changing requests CSRF-safe. Bodies are bounded (maxBody) and
// decoded strictly.
// Live data (the fleet, tracepoints and their status, hits in execution
// order) goes to the browser as server-sent events on GET /api/events, read
// with fetch so that the header can carry the token; the browser never
// gets NATS credentials.
//
// Each open page is a session with a fleet.Lease: the tracepoints it sets
// are owned by its user (or by the session, for the token), renewed while
// the page's event stream is open, removed when the page has been gone for
// Options.Grace or when the expiry its user gave passes
// (Lease.DeclareUntil), and expired by the agents if the server itself
// dies. Which programs have a clicked file is asked of every host that
// runs the module at once, through the hub's fleet.HostWatch.
//
// [Sources] keeps clones of the services' repositories in the server's
// data directory (go-git), fetched when a process of an unknown revision
// appears and on demand, and serves each revision's files. A click is
// mapped into every running revision by source.Resolve, the code the CLI,
// the debug adapter and the language server use; a revision where the
// line changed is refused with the reason.
//
// The Server's goroutines: the hub's fleet poller, tracepoint poller (with
// one status watcher per tracepoint) and timeline reader, which fan out to
// the event streams; one writer per event stream (its handler); and one
// lease renewer per session.
package web
