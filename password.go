package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
)

// maxPassword bounds what is read as a password: a whole file given by
// mistake (a key file, a log) must not become one.
const maxPassword = 4096

// keyringFlags are the two ways to give the keyring password (SPEC §4) of
// the services that have keyring-password: true.
type keyringFlags struct {
	KeyringPasswordFile  string `name:"keyring-password-file" type:"path" placeholder:"PATH" xor:"keyring-password" help:"File whose first line is the keyring password, written to the stdin of services with keyring-password: true." env:"LAVAVISOR_KEYRING_PASSWORD_FILE"`
	EnterKeyringPassword bool   `name:"enter-keyring-password" xor:"keyring-password" help:"Ask for the keyring password at start (no echo on a terminal; else one line of stdin)."`
}

func (f keyringFlags) given() bool { return f.KeyringPasswordFile != "" || f.EnterKeyringPassword }

// keyringPassword is read once at start and kept in memory only: it goes to
// the stdin of the services that want it, at each of their starts, and
// nowhere else (no log, no file, no argv, no environment).
type keyringPassword struct {
	flags keyringFlags
	// wants names the services of cfg that are fed the password.
	wants  func(cfg *config.Config) []string
	stdin  *os.File
	prompt io.Writer // where the prompt goes on a terminal
	secret []byte
}

// keyringServices are the services with keyring-password: true.
func keyringServices(cfg *config.Config) []string {
	var names []string
	for _, s := range cfg.Services {
		if s.KeyringPassword {
			names = append(names, s.Name)
		}
	}
	return names
}

// check refuses a config whose services want a password that no flag gives;
// it runs at each load, so a SIGHUP that adds such a service is refused too.
func (k *keyringPassword) check(cfg *config.Config) error {
	if k == nil || k.flags.given() {
		return nil
	}
	names := k.wants(cfg)
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("service %s has keyring-password: true, but no keyring password is given: use --keyring-password-file PATH or --enter-keyring-password",
		strings.Join(names, ", "))
}

// reloadable refuses a reloaded config that adds a service wanting the
// password when none was read at start: it would start with an empty stdin.
func (k *keyringPassword) reloadable(cfg *config.Config) error {
	if k == nil || k.secret != nil {
		return nil
	}
	names := k.wants(cfg)
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("service %s has keyring-password: true, but no keyring password was read at start (none was wanted then): restart lavavisor to read it",
		strings.Join(names, ", "))
}

// read gets the password, once, when a service of cfg wants it. A stop
// signal (ctx) cancels a prompt and restores the terminal's echo.
func (k *keyringPassword) read(ctx context.Context, cfg *config.Config, log *logrus.Entry) error {
	if k == nil || !k.flags.given() || k.secret != nil {
		return nil
	}
	if len(k.wants(cfg)) == 0 {
		log.Warn("a keyring password source was given, but no service has keyring-password: true; not reading it")
		return nil
	}
	var err error
	if k.flags.KeyringPasswordFile != "" {
		k.secret, err = passwordFromFile(k.flags.KeyringPasswordFile)
	} else {
		k.secret, err = passwordFromInput(ctx, k.stdin, k.prompt)
	}
	return err
}

// apply feeds the password to the specs of the services that want it.
func (k *keyringPassword) apply(cfg *config.Config, specs []supervisor.Spec) []supervisor.Spec {
	if k == nil || k.secret == nil {
		return specs
	}
	for _, name := range k.wants(cfg) {
		for i := range specs {
			if specs[i].Name == name {
				specs[i].Stdin = k.secret
			}
		}
	}
	return specs
}

func passwordFromFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring password file: %w", err)
	}
	defer f.Close()
	pw, err := firstLine(f)
	if err != nil {
		return nil, fmt.Errorf("keyring password file %s: %w", path, err)
	}
	return pw, nil
}

// passwordFromInput prompts without echo on a terminal, else reads one line:
// a password piped in by a script or a secret manager.
func passwordFromInput(ctx context.Context, in *os.File, prompt io.Writer) ([]byte, error) {
	if in == nil {
		in = os.Stdin
	}
	if prompt == nil {
		prompt = os.Stderr
	}
	fd := int(in.Fd())
	if term.IsTerminal(fd) {
		saved, err := term.GetState(fd)
		if err != nil {
			return nil, fmt.Errorf("read the keyring password from the terminal: %w", err)
		}
		fmt.Fprint(prompt, "Keyring password: ")
		type answer struct {
			pw  []byte
			err error
		}
		got := make(chan answer, 1)
		go func() {
			pw, err := term.ReadPassword(fd)
			got <- answer{pw, err}
		}()
		var pw []byte
		select {
		case a := <-got:
			pw, err = a.pw, a.err
		case <-ctx.Done():
			// Ctrl-C is caught (it does not kill): give the terminal its
			// echo back; the process exits with the read still pending.
			term.Restore(fd, saved)
			fmt.Fprintln(prompt)
			return nil, fmt.Errorf("keyring password prompt: %w", ctx.Err())
		}
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read the keyring password from the terminal: %w", err)
		}
		if len(pw) == 0 {
			return nil, errors.New("the keyring password entered is empty")
		}
		return pw, nil
	}
	pw, err := firstLine(in)
	if err != nil {
		return nil, fmt.Errorf("keyring password from stdin (--enter-keyring-password): %w", err)
	}
	return pw, nil
}

// firstLine reads one line (without its line ending) of at most maxPassword
// bytes; an empty one is an error.
func firstLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPassword+2), maxPassword+2).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("the first line is longer than %d bytes", maxPassword)
		}
		return nil, err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) > maxPassword {
		return nil, fmt.Errorf("the first line is longer than %d bytes", maxPassword)
	}
	if len(line) == 0 {
		return nil, errors.New("the password is empty")
	}
	return bytes.Clone(line), nil
}
