package fleet

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// ErrDataDirInUse refuses a server whose data directory another server
// holds: two servers writing one JetStream store corrupt it.
type ErrDataDirInUse struct {
	Dir string
	Pid int // the holder's, 0 if its lock file does not say
}

func (e ErrDataDirInUse) Error() string {
	owner := "another process"
	if e.Pid > 0 {
		owner = fmt.Sprintf("pid %d", e.Pid)
	}
	return fmt.Sprintf("the data directory %s is in use by %s, a riptrace server. Stop that server, or give this one another --data directory", e.Dir, owner)
}

// checkListen binds host:port for a moment, so that a port in use is
// reported at once with the bind error: nats-server only logs it, and
// the server would be waited for in vain. Port 0 or -1 picks a free one.
func checkListen(host string, port int) error {
	if port <= 0 {
		return nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return fmt.Errorf("listening on %s: %v. Stop what uses it, or pick another address with --listen", addr, err)
	}
	return l.Close()
}
