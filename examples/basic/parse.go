package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// value is one variable's setting as written: a template (or list of
// templates) before ${NAME} expansion, and where it came from.
type value struct {
	Text  string
	Items []string
	// List says the value was written as a list: NAME=( ... ).
	List bool
	// From is "FILE:LINE", "environment", "--profile" or "default".
	From string
}

// String renders the template as a file would: a word, or ( words ).
func (v value) String() string {
	if !v.List {
		return shellQuote(v.Text)
	}
	s := "("
	for _, it := range v.Items {
		s += " " + shellQuote(it)
	}
	return s + " )"
}

// where names a variable's setting in error messages.
func (v value) where(name string) string {
	switch v.From {
	case "environment":
		return "environment variable " + name
	case "default", "":
		return name + " (default)"
	case "--profile":
		return "--profile"
	}
	return v.From + ": " + name
}

// assignment is one NAME=value of a configuration file.
type assignment struct {
	Name  string
	Value value
}

// parseConfig reads a configuration file: the subset of bash the original
// tool's configurations used, parsed by a real shell parser
// (mvdan.cc/sh/v3/syntax, bash dialect) and never executed:
//
//	# comment
//	NAME='single quoted'      no escapes inside, as in bash
//	NAME="double quoted"      \" \\ \$ \` are escapes
//	NAME=bare                 a word without spaces
//	NAME=( 'a' "b" c )        a list; it may span lines and hold comments
//	NAME='it'\''s'             quoted parts join into one word
//	NAME="${OTHER}.img"       ${NAME} is kept, expanded by paczfs later
//
// Anything else is an error naming the file and line: command
// substitution ($( ) and backticks), commands, functions, redirections,
// other expansions. Every bad statement is reported, up to ten.
func parseConfig(name string, data []byte) ([]assignment, error) {
	var out []assignment
	var errs []error
	src := string(data)
	offset := 0 // lines of src already consumed by earlier parses
	for len(errs) < 10 {
		f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(src), name)
		var stmts []*syntax.Stmt
		if f != nil {
			stmts = f.Stmts
		}
		for _, st := range stmts {
			if perr := parseErrorLine(err); perr > 0 && int(st.Pos().Line()) >= perr {
				break // statements at or after a syntax error are not whole
			}
			a, aerr := stmtAssignments(st)
			line := offset + int(st.Pos().Line())
			var pe *posError
			if errors.As(aerr, &pe) {
				line = offset + pe.line
			}
			if aerr != nil {
				errs = append(errs, fmt.Errorf("%s:%d: %w", name, line, aerr))
				continue
			}
			for _, x := range a {
				if _, ok := lookupVar(x.Name); !ok {
					errs = append(errs, fmt.Errorf("%s:%d: unknown variable %s (go run ./examples/basic -h lists them)", name, line, x.Name))
					continue
				}
				x.Value.From = fmt.Sprintf("%s:%d", name, line)
				if err := checkNoCommands(x.Value); err != nil {
					errs = append(errs, fmt.Errorf("%s:%d: %s: %w", name, line, x.Name, err))
					continue
				}
				out = append(out, x)
			}
		}
		if err == nil {
			return out, errors.Join(errs...)
		}
		// A syntax error: report it, then go on after its line.
		l := parseErrorLine(err)
		lines := strings.SplitAfter(src, "\n")
		msg := parseErrorText(err)
		if strings.HasPrefix(msg, "a list NAME=(") && l >= 1 && l <= len(lines) {
			if m := listStart.FindStringSubmatch(lines[l-1]); m != nil {
				msg = "the list " + m[1] + "=( is not closed with )"
			}
		}
		errs = append(errs, fmt.Errorf("%s:%d: %s", name, offset+l, msg))
		if l <= 0 || l >= len(lines) {
			return nil, errors.Join(errs...)
		}
		src = strings.Join(lines[l:], "")
		offset += l
	}
	return nil, errors.Join(append(errs, errors.New("too many errors"))...)
}

var listStart = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)=\(`)

// parseErrorLine is the line of a syntax error (0 for none).
func parseErrorLine(err error) int {
	var pe syntax.ParseError
	if errors.As(err, &pe) {
		return int(pe.Pos.Line())
	}
	return 0
}

// parseErrorText is a syntax error's message without its position.
func parseErrorText(err error) string {
	var pe syntax.ParseError
	if errors.As(err, &pe) {
		msg := pe.Text
		switch {
		case strings.Contains(msg, "without closing quote"):
			q := strings.Trim(msg[strings.LastIndex(msg, " ")+1:], "` ")
			return "unterminated " + q + " quote"
		case strings.Contains(msg, "without matching") && strings.Contains(msg, "("):
			return "a list NAME=( is not closed with )"
		}
		return msg
	}
	return err.Error()
}

// stmtAssignments checks that a statement is only NAME=value assignments
// and returns them.
func stmtAssignments(st *syntax.Stmt) ([]assignment, error) {
	if st.Semicolon.IsValid() || st.Background || st.Coprocess || st.Negated {
		return nil, errors.New("unquoted ';' or '&': one NAME=value per line, quote values with shell characters")
	}
	if len(st.Redirs) > 0 {
		return nil, errors.New("redirections are not supported: expected NAME='value'")
	}
	switch c := st.Cmd.(type) {
	case *syntax.FuncDecl:
		return nil, fmt.Errorf("shell functions are not supported (%s): put hook scripts in HOOKS_DIR", c.Name.Value)
	case *syntax.CallExpr:
		if len(c.Assigns) == 0 {
			return nil, fmt.Errorf("expected NAME='value' (no spaces around =), got a command: %s", wordsText(c.Args))
		}
		if len(c.Args) > 0 {
			last := c.Assigns[len(c.Assigns)-1].Name.Value
			return nil, fmt.Errorf("unexpected %q after the value of %s: quote values that contain spaces or shell characters", wordsText(c.Args), last)
		}
		var out []assignment
		for _, as := range c.Assigns {
			if as.Append || as.Naked || as.Index != nil {
				return nil, fmt.Errorf("expected NAME='value' or NAME=( ... ) for %s", as.Name.Value)
			}
			v := value{}
			if as.Array != nil {
				v.List = true
				for _, el := range as.Array.Elems {
					if el.Index != nil {
						return nil, fmt.Errorf("%s: indexed list elements are not supported", as.Name.Value)
					}
					t, err := wordText(el.Value)
					if err != nil {
						return nil, named(as.Name.Value, err)
					}
					v.Items = append(v.Items, t)
				}
			} else if as.Value != nil {
				t, err := wordText(as.Value)
				if err != nil {
					return nil, named(as.Name.Value, err)
				}
				v.Text = t
			}
			out = append(out, assignment{Name: as.Name.Value, Value: v})
		}
		return out, nil
	}
	return nil, errors.New("expected NAME='value': only assignments are read, nothing is run")
}

// named prefixes a variable's name to its error; command substitution
// found by the parser needs none (the line says where).
func named(name string, err error) error {
	if errors.Is(err, errCommand) {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}

func wordsText(ws []*syntax.Word) string {
	var parts []string
	for _, w := range ws {
		parts = append(parts, w.Lit())
		if w.Lit() == "" {
			var b strings.Builder
			_ = syntax.NewPrinter().Print(&b, w)
			parts[len(parts)-1] = b.String()
		}
	}
	return strings.Join(parts, " ")
}

// posError is an error at a line of the parsed text.
type posError struct {
	line int
	err  error
}

func (e *posError) Error() string { return e.err.Error() }
func (e *posError) Unwrap() error { return e.err }

func atLine(n syntax.Node, err error) error { return &posError{line: int(n.Pos().Line()), err: err} }

var errCommand = errors.New("command substitution ($( ) or backticks) is not supported: configuration values are never run by a shell")

// wordText turns a word into paczfs's template text: quotes removed,
// escapes resolved, ${NAME} (and $NAME) kept as ${NAME} for expansion.
func wordText(w *syntax.Word) (string, error) {
	var b strings.Builder
	for _, p := range w.Parts {
		switch p := p.(type) {
		case *syntax.Lit:
			b.WriteString(unescape(p.Value, false))
		case *syntax.SglQuoted:
			if p.Dollar {
				return "", errors.New("$'...' quoting is not supported: use '...'")
			}
			b.WriteString(p.Value)
		case *syntax.DblQuoted:
			if p.Dollar {
				return "", errors.New("$\"...\" quoting is not supported: use \"...\"")
			}
			for _, q := range p.Parts {
				switch q := q.(type) {
				case *syntax.Lit:
					b.WriteString(unescape(q.Value, true))
				case *syntax.ParamExp:
					t, err := paramText(q)
					if err != nil {
						return "", err
					}
					b.WriteString(t)
				case *syntax.CmdSubst:
					return "", atLine(q, errCommand)
				default:
					return "", fmt.Errorf("unsupported shell syntax in double quotes (%T)", q)
				}
			}
		case *syntax.ParamExp:
			t, err := paramText(p)
			if err != nil {
				return "", err
			}
			b.WriteString(t)
		case *syntax.CmdSubst:
			return "", atLine(p, errCommand)
		default:
			return "", fmt.Errorf("unsupported shell syntax (%T): quote the value", p)
		}
	}
	return b.String(), nil
}

// paramText keeps a plain ${NAME} or $NAME for paczfs's own expansion.
func paramText(p *syntax.ParamExp) (string, error) {
	if p.Excl || p.Length || p.Width || p.Index != nil || p.Slice != nil || p.Repl != nil || p.Exp != nil || p.Names != 0 || p.Param == nil {
		return "", errors.New("only ${NAME} expansions are supported")
	}
	return "${" + p.Param.Value + "}", nil
}

// unescape resolves backslashes as bash does: outside quotes any
// character, inside double quotes only $ ` " \ and newline.
func unescape(s string, dbl bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			n := s[i+1]
			switch {
			case n == '\n':
				i++
				continue
			case !dbl || strings.IndexByte("$`\"\\", n) >= 0:
				b.WriteByte(n)
				i++
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// splitWords splits a list given as one string (an environment variable,
// or a quoted value for a list variable) at whitespace. Quotes group
// words as in a file: LOCALES="'en_US.UTF-8 UTF-8' 'de_DE.UTF-8 UTF-8'".
// Surrounding ( ) are allowed.
func splitWords(str string) ([]string, error) {
	t := strings.TrimSpace(str)
	if strings.HasPrefix(t, "(") && strings.HasSuffix(t, ")") {
		t = t[1 : len(t)-1]
	}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader("L=( "+t+"\n)"), "")
	if err != nil {
		var pe syntax.ParseError
		if errors.As(err, &pe) {
			return nil, errors.New(parseErrorText(err))
		}
		return nil, err
	}
	a, err := func() ([]assignment, error) {
		if len(f.Stmts) != 1 {
			return nil, errors.New("one list of words expected")
		}
		return stmtAssignments(f.Stmts[0])
	}()
	if err != nil {
		return nil, err
	}
	if len(a) != 1 {
		return nil, errors.New("one list of words expected")
	}
	return a[0].Value.Items, checkNoCommands(a[0].Value)
}

// checkNoCommands rejects command substitution anywhere in a value, also
// in single quotes: the original evaluated those, paczfs never does.
func checkNoCommands(v value) error {
	for _, t := range append([]string{v.Text}, v.Items...) {
		if strings.Contains(t, "$(") || strings.Contains(t, "`") {
			if strings.Contains(t, "date +%s") {
				return fmt.Errorf("%w; for the current Unix time write ${EPOCHSECONDS}", errCommand)
			}
			return errCommand
		}
	}
	return nil
}

// shellQuote single-quotes s so that parseConfig (and bash) read it back
// unchanged.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || !first && c >= '0' && c <= '9'
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i], i == 0) {
			return false
		}
	}
	return s != ""
}
