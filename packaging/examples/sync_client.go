// Durable acknowledgements from a Go app, without running `walship sync`.
//
// An app that must not tell its user "saved" before the data is off the
// machine asks the `walship replicate` of its database whether everything
// it has committed so far is in the replica. This file is the whole
// client, in Go's standard library only: copy Sync into the app and call
// it after the commits that matter (an order placed, every 10th commit...).
//
// The protocol, on the Unix socket replicate listens on for each database
// (DB-walship/control.sock beside the database unless replicate was given
// --control-socket or a control-socket in walship.toml), one line each
// way, then replicate closes the connection:
//
//	client: "sync 5s\n"          (or "sync\n": replicate's default, 5 s)
//	server: "ok\n"               everything committed to the database when
//	                             the request arrived is in every replica
//	        "timeout MESSAGE\n"  not within the timeout (MESSAGE says why,
//	                             e.g. the replica's last storage error)
//	        "fenced MESSAGE\n"   another writer took the replica over: this
//	                             node's commits from now on are not kept
//	        "error MESSAGE\n"    anything else (replicate stopped first, a
//	                             bad request, too many waiters)
//
// The socket is mode 0600, owned by the database file's owner: run the app
// as that user (or root). The protocol is docs/DESIGN.md, "Control socket".
//
// As a command it behaves like `walship sync` (exit 0 durable, 1 not
// durable or no replicate, 4 fenced, 2 usage error):
//
//	go run sync_client.go [-timeout 5s] [-control-socket PATH] DB
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// answerGrace is how much longer than the timeout replicate gets to answer:
// it answers "timeout ..." itself once the timeout is up, so no answer after
// this long means it is wedged or gone, never that the store is slow.
const answerGrace = 10 * time.Second

// NotDurableError says the commits were not acknowledged as durable. Kind
// is the answer's first word ("timeout", "fenced" or "error"), or
// "unreachable" when no replicate could be asked.
type NotDurableError struct {
	Kind    string
	Message string
}

func (e *NotDurableError) Error() string { return e.Kind + ": " + e.Message }

// SocketPath is where replicate listens for dbPath by default.
func SocketPath(dbPath string) string { return dbPath + "-walship/control.sock" }

// Sync returns nil once everything committed to dbPath before the call is
// in every replica, else a *NotDurableError. socketPath "" means the
// default, SocketPath(dbPath).
//
// Call it after the commit, never inside a transaction: replicate waits for
// what was committed when the request arrived.
func Sync(dbPath string, timeout time.Duration, socketPath string) error {
	if socketPath == "" {
		socketPath = SocketPath(dbPath)
	}
	deadline := time.Now().Add(timeout + answerGrace)
	conn, err := connect(socketPath, dbPath, deadline)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)

	// The protocol's durations are "5s", "500ms", "2m": whole milliseconds.
	millis := timeout.Milliseconds()
	if millis < 1 {
		millis = 1
	}
	duration := fmt.Sprintf("%dms", millis)
	if millis%1000 == 0 {
		duration = fmt.Sprintf("%ds", millis/1000)
	}
	// A failed write is not the end: replicate may have answered (a
	// refusal) and closed before reading the request; read its answer.
	conn.Write([]byte("sync " + duration + "\n"))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		// A timeout, or the connection closed without a whole line:
		// replicate stopped or was killed before it could answer.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return &NotDurableError{"error", fmt.Sprintf("the replicate of '%s' did not answer within %v", dbPath, timeout+answerGrace)}
		}
		return &NotDurableError{"error", fmt.Sprintf("the replicate of '%s' stopped before answering", dbPath)}
	}
	kind, message, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	switch kind {
	case "ok":
		return nil
	case "timeout", "fenced", "error":
		return &NotDurableError{kind, message}
	}
	return &NotDurableError{"error", fmt.Sprintf("unexpected answer %q", line)}
}

// connect dials replicate's socket, or says why no replicate could be asked.
func connect(socketPath, dbPath string, deadline time.Time) (net.Conn, error) {
	for {
		conn, err := net.DialTimeout("unix", socketPath, time.Until(deadline))
		switch {
		case err == nil:
			return conn, nil
		case errors.Is(err, syscall.EAGAIN) && time.Now().Before(deadline):
			// The listen backlog is full (many clients at once): replicate
			// is accepting them, so try again shortly.
			time.Sleep(10 * time.Millisecond)
		case errors.Is(err, syscall.ENOENT):
			return nil, &NotDurableError{"unreachable", fmt.Sprintf("no replicate of '%s' is running (no socket '%s')", dbPath, socketPath)}
		case errors.Is(err, syscall.ECONNREFUSED):
			// The socket file a killed replicate left behind: nobody listens.
			return nil, &NotDurableError{"unreachable", fmt.Sprintf("no replicate of '%s' is running (nothing listens on '%s')", dbPath, socketPath)}
		case errors.Is(err, syscall.EACCES):
			return nil, &NotDurableError{"unreachable", fmt.Sprintf("'%s' is not accessible to this user: run as the database's owner", socketPath)}
		default:
			return nil, &NotDurableError{"unreachable", fmt.Sprintf("unable to connect to '%s': %v", socketPath, err)}
		}
	}
}

func main() {
	flags := flag.NewFlagSet("sync_client", flag.ContinueOnError)
	timeout := flags.Duration("timeout", 5*time.Second, "how long to wait, e.g. 5s, 500ms, 2m")
	socketPath := flags.String("control-socket", "", "replicate's socket (default DB-walship/control.sock)")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: sync_client [-timeout 5s] [-control-socket PATH] DB")
		flags.PrintDefaults()
	}
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2) // the flag package printed what was wrong
	}
	if flags.NArg() != 1 || *timeout <= 0 {
		flags.Usage()
		os.Exit(2)
	}
	db := flags.Arg(0)
	if err := Sync(db, *timeout, *socketPath); err != nil {
		fmt.Fprintf(os.Stderr, "sync_client: %s: %v\n", db, err)
		var notDurable *NotDurableError
		if errors.As(err, &notDurable) && notDurable.Kind == "fenced" {
			os.Exit(4)
		}
		os.Exit(1)
	}
}
