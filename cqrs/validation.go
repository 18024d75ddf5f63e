package cqrs

import "errors"

// Validator is implemented by commands that check their own input. The bus
// calls Validate before the handler, so an invalid command is rejected
// before anything is loaded or written, with a [*ValidationError].
//
// Validate should report every problem at once: return [FieldError] values
// joined with [errors.Join], for which [Check] is a shorthand:
//
//	func (c PlaceOrder) Validate() error {
//		return errors.Join(
//			cqrs.Check(c.OrderID != "", "OrderID", "is required"),
//			cqrs.Check(len(c.Lines) > 0, "Lines", "must not be empty"),
//		)
//	}
//
// Other errors are allowed too; they are reported without a field.
type Validator interface {
	Validate() error
}

// FieldError is one invalid field of a command.
type FieldError struct {
	Field   string // the field's name as the caller knows it, such as "Lines[2].Quantity"
	Message string // what is wrong, such as "must be positive"
}

func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// Check returns nil when ok holds, and otherwise a [FieldError] for field.
// Join several with [errors.Join], which drops the nils.
func Check(ok bool, field, message string) error {
	if ok {
		return nil
	}
	return FieldError{Field: field, Message: message}
}

// validate runs cmd's Validate method, whether it has a value or a pointer
// receiver, and wraps a failure in a [*ValidationError].
func validate[C any](name string, cmd C) error {
	var err error
	switch v := any(cmd).(type) {
	case Validator:
		err = v.Validate()
	default:
		p, ok := any(&cmd).(Validator)
		if !ok {
			return nil
		}
		err = p.Validate()
	}
	if err == nil {
		return nil
	}
	return &ValidationError{Command: name, Fields: fieldErrors(err, nil), Err: err}
}

// fieldErrors appends every FieldError in err's tree to out, in order.
func fieldErrors(err error, out []FieldError) []FieldError {
	switch e := err.(type) { //nolint:errorlint // walks the tree itself, to keep the order
	case nil:
		return out
	case FieldError:
		return append(out, e)
	case *FieldError:
		if e != nil {
			out = append(out, *e)
		}
		return out
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			out = fieldErrors(inner, out)
		}
		return out
	}
	return fieldErrors(errors.Unwrap(err), out)
}
