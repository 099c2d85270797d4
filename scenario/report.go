package scenario

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// Summary writes the human report: each expectation ✓ or ✗, and under a
// failure the hits that broke it, in order, with the values that mattered.
func (r *Result) Summary(w io.Writer) {
	fmt.Fprintf(w, "%s: %d hits\n", r.Name, r.Hits)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  ✗ run: %s\n", indent(e, "      "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  ! %s\n", n)
	}
	for _, o := range r.Outcomes {
		mark := "✓"
		if !o.OK {
			mark = "✗"
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark, o.Title, o.Detail)
		for _, c := range o.Culprits {
			fmt.Fprintf(w, "      %s\n", c.line())
		}
		if o.More > 0 {
			fmt.Fprintf(w, "      … and %d more\n", o.More)
		}
	}
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	t := r.Timing
	switch {
	case t.Start == 0 && t.Steps == 0 && t.Evaluate == 0:
		fmt.Fprintf(w, "%s %s\n", verdict, r.Name) // the run did not happen
		return
	case t.Start == 0 && t.Steps == 0:
		fmt.Fprintf(w, "%s %s in %v (evaluate, a replay)\n", verdict, r.Name, round(t.Evaluate))
		return
	}
	fmt.Fprintf(w, "%s %s in %v (start %v, attach %v, steps %v, settle %v, evaluate %v, stop %v)\n", verdict, r.Name,
		round(t.Start+t.Attach+t.Steps+t.Settle+t.Evaluate+t.Stop), round(t.Start), round(t.Attach), round(t.Steps), round(t.Settle), round(t.Evaluate), round(t.Stop))
}

func round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// line is a culprit on one line: where and when, then the values.
func (c *Culprit) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%s %s %s:%d %s pid %d %s", c.Number, c.Tracepoint, shortFile(c.File), c.Line, c.Host, c.Pid, c.Time.Format("15:04:05.000000"))
	for _, v := range c.Values {
		fmt.Fprintf(&b, " %s=%s", v.Name, v.Value)
	}
	if c.Note != "" {
		b.WriteString(" — " + c.Note)
	}
	return b.String()
}

func shortFile(p string) string {
	parts := strings.Split(p, "/")
	if len(parts) > 2 {
		return strings.Join(parts[len(parts)-2:], "/")
	}
	return p
}

func indent(s, prefix string) string { return strings.ReplaceAll(s, "\n", "\n"+prefix) }

// T is what Report needs of a *testing.T.
type T interface {
	Helper()
	Errorf(format string, args ...any)
}

// Report fails t once per failed expectation and per run error, with the
// hits that broke it.
func (r *Result) Report(t T) {
	t.Helper()
	for _, e := range r.Errors {
		t.Errorf("scenario %s: %s", r.Name, e)
	}
	for _, o := range r.Outcomes {
		if o.OK {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "✗ %s: %s", o.Title, o.Detail)
		for _, c := range o.Culprits {
			b.WriteString("\n    " + c.line())
		}
		if o.More > 0 {
			fmt.Fprintf(&b, "\n    … and %d more", o.More)
		}
		t.Errorf("%s", b.String())
	}
}

// JUnit writes the results as JUnit XML: a test suite per result, a test
// case per expectation (and one for the run itself when it failed).
func JUnit(w io.Writer, results []*Result) error {
	type failure struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
	type testcase struct {
		Name      string   `xml:"name,attr"`
		Classname string   `xml:"classname,attr"`
		Time      string   `xml:"time,attr"`
		Failure   *failure `xml:"failure,omitempty"`
	}
	type testsuite struct {
		Name     string     `xml:"name,attr"`
		Tests    int        `xml:"tests,attr"`
		Failures int        `xml:"failures,attr"`
		Time     string     `xml:"time,attr"`
		Cases    []testcase `xml:"testcase"`
	}
	type testsuites struct {
		XMLName xml.Name    `xml:"testsuites"`
		Suites  []testsuite `xml:"testsuite"`
	}
	var out testsuites
	for _, r := range results {
		t := r.Timing
		s := testsuite{Name: r.Name, Time: secs(t.Start + t.Attach + t.Steps + t.Settle + t.Evaluate + t.Stop)}
		if len(r.Errors) > 0 {
			s.Cases = append(s.Cases, testcase{Name: "run", Classname: r.Name, Time: "0",
				Failure: &failure{Message: r.Errors[0], Text: strings.Join(r.Errors, "\n")}})
		}
		for _, o := range r.Outcomes {
			c := testcase{Name: o.Title, Classname: r.Name, Time: secs(t.Evaluate / time.Duration(max(len(r.Outcomes), 1)))}
			if !o.OK {
				var b strings.Builder
				for _, cu := range o.Culprits {
					b.WriteString(cu.line() + "\n")
				}
				c.Failure = &failure{Message: o.Detail, Text: b.String()}
			}
			s.Cases = append(s.Cases, c)
		}
		s.Tests = len(s.Cases)
		for _, c := range s.Cases {
			if c.Failure != nil {
				s.Failures++
			}
		}
		out.Suites = append(out.Suites, s)
	}
	io.WriteString(w, xml.Header)
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
