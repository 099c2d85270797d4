package web

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Users are the page's HTTP basic users, an alternative to its bearer
// token: each signs in with a name and password, and owns the tracepoints
// set from its pages. They are read from an htpasswd file of
// "name:bcrypt-hash" lines (htpasswd -B writes them).
type Users struct {
	users []user
	// dummy is checked for an unknown name, so that a wrong name costs
	// what a wrong password does and answers tell no names.
	dummy []byte
	// salt keys the cache of good credentials, so that a dump of the
	// cache's keys is no table of password hashes.
	salt [16]byte
	// slots bounds the bcrypt checks running at once: each costs tens of
	// milliseconds of CPU, and a flood of wrong passwords must not starve
	// the server.
	slots chan struct{}

	// mu guards good.
	mu   sync.Mutex
	good map[[32]byte]time.Time // credentials checked lately → until when they stay good
}

type user struct {
	name string
	hash []byte
}

// userRe is a user name: it becomes the owner of the user's tracepoints.
var userRe = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// goodFor is how long a checked name and password are taken without
// bcrypt again: every API request carries them.
const goodFor = 5 * time.Minute

// maxGood bounds the cache of good credentials.
const maxGood = 1024

// ReadUsers reads an htpasswd file of "name:bcrypt-hash" lines; blank
// lines and lines starting with # are skipped.
func ReadUsers(file string) (*Users, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading the users file: %w", err)
	}
	defer f.Close()
	return ParseUsers(f, file)
}

// ParseUsers reads htpasswd lines from r; name names r in errors.
func ParseUsers(r io.Reader, name string) (*Users, error) {
	u := &Users{slots: make(chan struct{}, 2), good: make(map[[32]byte]time.Time)}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	cost := bcrypt.DefaultCost
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		who, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("%s:%d: no colon. Write name:bcrypt-hash lines, as htpasswd -B makes", name, n)
		case !userRe.MatchString(who):
			return nil, fmt.Errorf("%s:%d: user name %q is not 1 to 64 letters, digits, '.', '_', '@' or '-'. Rename the user", name, n, who)
		case seen[who]:
			return nil, fmt.Errorf("%s:%d: user %s is listed twice. Keep one line per user", name, n, who)
		}
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: the hash of user %s is not bcrypt (%v). Make it with htpasswd -B, other htpasswd schemes are refused", name, n, who, err)
		}
		seen[who] = true
		cost = c
		u.users = append(u.users, user{who, []byte(hash)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(u.users) == 0 {
		return nil, fmt.Errorf("%s lists no users. Add name:bcrypt-hash lines, or leave the users file out", name)
	}
	rand.Read(u.salt[:])
	secret := make([]byte, 32)
	rand.Read(secret)
	dummy, err := bcrypt.GenerateFromPassword([]byte(fmt.Sprintf("%x", secret)), cost)
	if err != nil {
		return nil, fmt.Errorf("making the hash unknown names are checked against: %w", err)
	}
	u.dummy = dummy
	return u, nil
}

// Check reports whether password is name's. Names are compared in
// constant time, and an unknown name is checked against a hash like the
// others, so that neither the answer nor its time tells which names exist.
func (u *Users) Check(name, password string) bool {
	// The name's length goes first, so that no other split of the same
	// bytes into a name and a password has the key.
	key := sha256.Sum256(fmt.Appendf(u.salt[:len(u.salt):len(u.salt)], "%d:%s:%s", len(name), name, password))
	now := time.Now()
	u.mu.Lock()
	until, ok := u.good[key]
	u.mu.Unlock()
	if ok && now.Before(until) {
		return true
	}
	hash, found := u.dummy, 0
	for _, us := range u.users {
		if subtle.ConstantTimeCompare([]byte(us.name), []byte(name)) == 1 {
			hash, found = us.hash, 1
		}
	}
	u.slots <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	<-u.slots
	if err != nil || found == 0 {
		return false
	}
	u.mu.Lock()
	if len(u.good) >= maxGood {
		clear(u.good)
	}
	u.good[key] = now.Add(goodFor)
	u.mu.Unlock()
	return true
}
