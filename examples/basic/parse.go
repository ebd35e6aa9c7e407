package main

import (
	"errors"
	"fmt"
	"strings"
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
// tool's configurations used, parsed and never executed.
//
//	# comment
//	NAME='single quoted'      no escapes inside, as in bash
//	NAME="double quoted"      \" \\ \$ \` are escapes
//	NAME=bare                 a word without spaces
//	NAME=( 'a' "b" c )        a list; it may span lines and hold comments
//	NAME='it'\''s'             quoted parts join into one word
//
// Command substitution ($( ) and
// backticks) is an error, as is any other shell syntax. name is used in
// errors ("FILE:LINE: ...").
func parseConfig(name string, data []byte) ([]assignment, error) {
	s := &scanner{file: name, src: string(data), line: 1, comments: true}
	var out []assignment
	var errs []error
	for {
		s.skipBlank(true)
		if s.eof() {
			return out, errors.Join(errs...)
		}
		a, err := s.assignment()
		if err != nil {
			errs = append(errs, err)
			if len(errs) == 10 {
				return nil, errors.Join(append(errs, errors.New("too many errors"))...)
			}
			s.skipLine()
			continue
		}
		out = append(out, a)
	}
}

// scanner reads configuration text. Delimiters are ASCII, so it works on
// bytes; other UTF-8 text passes through untouched.
type scanner struct {
	file     string
	src      string
	i        int
	line     int
	comments bool // # starts a comment where a word could start
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

func (s *scanner) errorf(line int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if s.file == "" {
		return errors.New(msg)
	}
	return fmt.Errorf("%s:%d: %s", s.file, line, msg)
}

// skipBlank skips spaces, tabs and comments, and newlines too when nl.
func (s *scanner) skipBlank(nl bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case c == '\n' && nl:
			s.i++
			s.line++
		case c == '#' && s.comments:
			for !s.eof() && s.peek() != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// skipLine moves past the current line, to resume after an error.
func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.i++
	}
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

func (s *scanner) assignment() (assignment, error) {
	line := s.line
	start := s.i
	for !s.eof() && isNameByte(s.peek(), s.i == start) {
		s.i++
	}
	name := s.src[start:s.i]
	if name == "" || s.peek() != '=' {
		rest := s.src[start:]
		if j := strings.IndexByte(rest, '\n'); j >= 0 {
			rest = rest[:j]
		}
		if strings.Contains(rest, "()") {
			return assignment{}, s.errorf(line, "shell functions are not supported (%q): put hook scripts in HOOKS_DIR", rest)
		}
		return assignment{}, s.errorf(line, "expected NAME='value' (no spaces around =), got %q", rest)
	}
	s.i++
	if _, ok := lookupVar(name); !ok {
		return assignment{}, s.errorf(line, "unknown variable %s (go run ./examples/basic -h lists them)", name)
	}
	v := value{From: fmt.Sprintf("%s:%d", s.file, line)}
	if s.peek() == '(' {
		s.i++
		v.List = true
		for {
			s.skipBlank(true)
			if s.eof() {
				return assignment{}, s.errorf(line, "the list %s=( is not closed with )", name)
			}
			if s.peek() == ')' {
				s.i++
				break
			}
			w, err := s.word(true)
			if err != nil {
				return assignment{}, err
			}
			v.Items = append(v.Items, w)
		}
	} else {
		w, err := s.word(false)
		if err != nil {
			return assignment{}, err
		}
		v.Text = w
	}
	s.skipBlank(false)
	if !s.eof() && s.peek() != '\n' {
		return assignment{}, s.errorf(s.line, "unexpected %q after the value of %s: quote values that contain spaces or shell characters", s.rest(), name)
	}
	if err := checkNoCommands(v); err != nil {
		return assignment{}, s.errorf(line, "%s: %v", name, err)
	}
	return assignment{Name: name, Value: v}, nil
}

// rest returns what is left of the current line.
func (s *scanner) rest() string {
	r := s.src[s.i:]
	if j := strings.IndexByte(r, '\n'); j >= 0 {
		r = r[:j]
	}
	return r
}

var errCommand = errors.New("command substitution ($( ) or backticks) is not supported: configuration values are never run by a shell")

// word reads one shell word: unquoted, '...' and "..." parts joined.
// In a list, an unquoted ) ends it.
func (s *scanner) word(inList bool) (string, error) {
	var b strings.Builder
	for !s.eof() {
		c := s.peek()
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			return b.String(), nil
		case c == ')' && inList:
			return b.String(), nil
		case c == '\'':
			line := s.line
			s.i++
			j := strings.IndexByte(s.src[s.i:], '\'')
			if j < 0 {
				return "", s.errorf(line, "unterminated ' quote")
			}
			part := s.src[s.i : s.i+j]
			s.line += strings.Count(part, "\n")
			b.WriteString(part)
			s.i += j + 1
		case c == '"':
			if err := s.doubleQuoted(&b); err != nil {
				return "", err
			}
		case c == '\\':
			s.i++
			if s.eof() {
				return "", s.errorf(s.line, "\\ at the end of the file")
			}
			if s.peek() == '\n' { // line continuation
				s.line++
			} else {
				b.WriteByte(s.peek())
			}
			s.i++
		case c == '`' || c == '$' && strings.HasPrefix(s.src[s.i:], "$("):
			return "", s.errorf(s.line, "%v", errCommand)
		case strings.IndexByte(";&|<>()", c) >= 0:
			return "", s.errorf(s.line, "unquoted %q: put the value in single quotes", c)
		default:
			b.WriteByte(c)
			s.i++
		}
	}
	return b.String(), nil
}

func (s *scanner) doubleQuoted(b *strings.Builder) error {
	line := s.line
	s.i++ // opening "
	for !s.eof() {
		c := s.peek()
		switch {
		case c == '"':
			s.i++
			return nil
		case c == '\\' && s.i+1 < len(s.src):
			n := s.src[s.i+1]
			switch n {
			case '\n':
				s.line++
			case '$', '`', '"', '\\':
				b.WriteByte(n)
			default:
				b.WriteByte('\\')
				b.WriteByte(n)
			}
			s.i += 2
		case c == '`' || c == '$' && strings.HasPrefix(s.src[s.i:], "$("):
			return s.errorf(s.line, "%v", errCommand)
		default:
			if c == '\n' {
				s.line++
			}
			b.WriteByte(c)
			s.i++
		}
	}
	return s.errorf(line, "unterminated \" quote")
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
	s := &scanner{src: t, line: 1}
	var words []string
	for {
		s.skipBlank(true)
		if s.eof() {
			return words, nil
		}
		w, err := s.word(false)
		if err != nil {
			return nil, err
		}
		words = append(words, w)
	}
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
