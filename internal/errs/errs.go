// Package errs declares sentinel errors the one way loramesh does: a fixed
// text without a package prefix (the wrap that reports it adds the step),
// optionally refining a broader sentinel so errors.Is matches both.
package errs

// New returns a sentinel with text msg.
func New(msg string) error { return &sentinel{msg: msg} }

// Sub returns a sentinel with text msg that also matches parent.
func Sub(parent error, msg string) error { return &sentinel{msg: msg, parent: parent} }

type sentinel struct {
	msg    string
	parent error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.parent }
