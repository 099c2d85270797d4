package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/web"
)

// uiFlags are riptrace server's flags of the web page.
type uiFlags struct {
	addr      string
	tokenFile string
	usersFile string
	readOnly  bool
	repos     stringList
	reposFile string
	gitKey    string
	groups    stringList
	tlsCert   string
	tlsKey    string
}

func (u *uiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&u.addr, "ui", "", "serve the web page on `ADDR` (PORT or HOST:PORT; the host is 127.0.0.1 unless given)")
	fs.StringVar(&u.tokenFile, "ui-token-file", "", "read the web page's bearer token from `FILE` (else a random one is printed at start)")
	fs.StringVar(&u.usersFile, "ui-users", "", "let the users of htpasswd `FILE` (name:bcrypt-hash lines, htpasswd -B) sign in with a password instead of the token; needs TLS off loopback")
	fs.BoolVar(&u.readOnly, "ui-readonly", false, "the web page shows the fleet but sets and removes no tracepoints")
	fs.Var(&u.repos, "ui-repo", "`MODULE=URL`: the git repository of a module the fleet runs (repeatable; modules on github.com, gitlab.com and the like need none)")
	fs.StringVar(&u.reposFile, "ui-repos", "", "`FILE` of \"MODULE URL\" lines, as --ui-repo")
	fs.StringVar(&u.gitKey, "ui-git-key", "", "SSH private key `FILE` for private git remotes (an HTTPS token goes in env RIPTRACE_GIT_TOKEN)")
	fs.StringVar(&u.tlsCert, "ui-tls-cert", "", "serve the web page over HTTPS with this certificate `FILE` (with --ui-tls-key)")
	fs.StringVar(&u.tlsKey, "ui-tls-key", "", "the key `FILE` of --ui-tls-cert")
	fs.Var(&u.groups, "ui-group", "group hits by the captured value `NAME` (repeatable), as riptrace timeline --group")
}

// listenAddr puts 127.0.0.1 in front of a bare port.
func (u *uiFlags) listenAddr() (string, error) {
	a := u.addr
	if !strings.Contains(a, ":") {
		a = ":" + a
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", usageError{fmt.Sprintf("--ui %q: give PORT or HOST:PORT, for example 127.0.0.1:7070", u.addr)}
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// loopback reports whether host names only this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// repoMap reads --ui-repo and --ui-repos.
func (u *uiFlags) repoMap() (map[string]string, error) {
	m := make(map[string]string)
	for _, r := range u.repos {
		mod, url, ok := strings.Cut(r, "=")
		if !ok || mod == "" || url == "" {
			return nil, usageError{fmt.Sprintf("--ui-repo %q: give MODULE=URL, for example example.com/orders=https://git.example.com/orders.git", r)}
		}
		m[mod] = url
	}
	if u.reposFile != "" {
		f, err := os.Open(u.reposFile)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--ui-repos: %v", err)}
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) != 2 {
				return nil, usageError{fmt.Sprintf("--ui-repos %s:%d: want \"MODULE URL\", got %q", u.reposFile, n, line)}
			}
			m[fields[0]] = fields[1]
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", u.reposFile, err)
		}
	}
	return m, nil
}

// gitAuth is how the server logs in to private remotes: an SSH key, or a
// token over HTTPS.
func (u *uiFlags) gitAuth() (transport.AuthMethod, error) {
	if u.gitKey != "" {
		k, err := gitssh.NewPublicKeysFromFile("git", u.gitKey, os.Getenv("RIPTRACE_GIT_KEY_PASSWORD"))
		if err != nil {
			return nil, usageError{fmt.Sprintf("--ui-git-key %s: %v", u.gitKey, err)}
		}
		return k, nil
	}
	if tok := os.Getenv("RIPTRACE_GIT_TOKEN"); tok != "" {
		return &githttp.BasicAuth{Username: "riptrace", Password: tok}, nil
	}
	return nil, nil
}

// token reads --ui-token-file, or makes a random token.
func (u *uiFlags) token() (string, error) {
	if u.tokenFile == "" {
		return web.NewToken(), nil
	}
	b, err := os.ReadFile(u.tokenFile)
	if err != nil {
		return "", usageError{fmt.Sprintf("--ui-token-file: %v", err)}
	}
	return strings.TrimSpace(string(b)), nil
}

// startUI serves the web page next to the server s, on a fleet client
// connected in process. stop shuts it down.
func startUI(ctx context.Context, u *uiFlags, s *fleet.Server, prefix, dataDir string, stdout, stderr io.Writer) (stop func(), err error) {
	addr, err := u.listenAddr()
	if err != nil {
		return nil, err
	}
	repos, err := u.repoMap()
	if err != nil {
		return nil, err
	}
	auth, err := u.gitAuth()
	if err != nil {
		return nil, err
	}
	token, err := u.token()
	if err != nil {
		return nil, err
	}
	if (u.tlsCert == "") != (u.tlsKey == "") {
		return nil, usageError{"--ui-tls-cert and --ui-tls-key go together: give both, or neither for plain HTTP"}
	}
	var users *web.Users
	if u.usersFile != "" {
		if users, err = web.ReadUsers(u.usersFile); err != nil {
			return nil, usageError{fmt.Sprintf("--ui-users: %v", err)}
		}
		if host, _, _ := net.SplitHostPort(addr); u.tlsCert == "" && !loopback(host) {
			return nil, usageError{fmt.Sprintf("--ui-users on %s without TLS would send passwords in the clear. Serve on loopback (--ui 127.0.0.1:PORT), or give --ui-tls-cert and --ui-tls-key", addr)}
		}
	}
	var tlsConfig *tls.Config
	if u.tlsCert != "" {
		// Loaded now, so that a bad file stops the server at start.
		cert, err := tls.LoadX509KeyPair(u.tlsCert, u.tlsKey)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--ui-tls-cert %s, --ui-tls-key %s: %v", u.tlsCert, u.tlsKey, err)}
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	c, err := fleet.Connect(ctx, "", fleet.ClientOptions{Prefix: prefix, Name: "riptrace-web", NATS: []nats.Option{nats.InProcessServer(s.Server)}})
	if err != nil {
		return nil, fmt.Errorf("connecting the web page to the server: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ws, err := web.New(c, web.Options{
		Token:    token,
		Users:    users,
		ReadOnly: u.readOnly,
		Sources:  web.NewSources(filepath.Join(dataDir, "web-sources"), repos, auth),
		Group:    u.groups,
		Log:      log,
	})
	if err != nil {
		c.Close()
		return nil, usageError{err.Error()}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("listening for the web page on %s: %w. Pick another address with --ui", addr, err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	// Requests live in rctx, so that stopping ends the pages' event
	// streams at once instead of waiting for them to go idle.
	hs := &http.Server{Handler: ws, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return rctx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	ran := make(chan struct{})
	go func() { ws.Run(rctx); close(ran) }()
	served := make(chan struct{})
	scheme := "http"
	if tlsConfig != nil {
		hs.TLSConfig = tlsConfig
		ln = tls.NewListener(ln, tlsConfig)
		scheme = "https"
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "riptrace server: the web page stopped: %v\n", err)
		}
		close(served)
	}()
	url := scheme + "://" + ln.Addr().String() + "/"
	if u.tokenFile == "" {
		fmt.Fprintf(stdout, "riptrace web page: %s#token=%s\n", url, token)
	} else {
		fmt.Fprintf(stdout, "riptrace web page: %s (token in %s; open %s#token=TOKEN)\n", url, u.tokenFile, url)
	}
	if users != nil {
		fmt.Fprintf(stdout, "riptrace web page: the users of %s may sign in with their passwords\n", u.usersFile)
	}
	if u.readOnly {
		fmt.Fprintln(stdout, "riptrace web page: read-only")
	}
	return func() {
		cancel() // ends the event streams and the hub; Run removes the pages' tracepoints
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		hs.Shutdown(sctx)
		scancel()
		<-served
		<-ran
		c.Close()
	}, nil
}
