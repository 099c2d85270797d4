package fleet

import "path"

// Glob reports whether s matches pattern, where '*' matches any run of
// characters (slashes included, so "github.com/acme/*" matches every package
// under acme) and '?' matches one character.
func Glob(pattern, s string) bool {
	// Iterative matcher with single-star backtracking: linear in practice.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchProcess reports whether any glob matches the process's module path,
// main package path or executable base name. No globs match everything.
func MatchProcess(globs []string, p *Process) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if Glob(g, p.Module) || Glob(g, p.MainPackage) || Glob(g, path.Base(p.Exe)) {
			return true
		}
	}
	return false
}

// MatchHost reports whether the selector admits host.
func (s *Selector) MatchHost(host string) bool {
	if len(s.Hosts) == 0 {
		return true
	}
	for _, g := range s.Hosts {
		if Glob(g, host) {
			return true
		}
	}
	return false
}

// MatchProcess reports whether the selector admits process p.
func (s *Selector) MatchProcess(p *Process) bool {
	if len(s.Pids) > 0 {
		found := false
		for _, pid := range s.Pids {
			found = found || pid == p.Pid
		}
		if !found {
			return false
		}
	}
	return MatchProcess(s.Processes, p)
}
