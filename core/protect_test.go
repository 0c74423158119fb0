package core

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 11 #8. Every read of a secret slot (*x.p, x.p[:]) and every
// all-zero check of a DH output (secret.IsZero) in the core runs inside a
// function literal handed to secret.Do, whose stack and registers
// runtime/secret erases; so do the calls of chainKey.step, the one helper
// that reads slots for its callers. A copy such as symmetric.clone's made
// outside it leaves the chaining key in a stack temporary and a register
// (visible in `go build -gcflags=-S ./core/`), where no scan reliably finds
// it: hence this check on the source.
func TestSecretsOnlyInsideDo(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		var stack []ast.Node
		ast.Inspect(file, func(n ast.Node) bool {
			if n == nil {
				stack = stack[:len(stack)-1]
				return true
			}
			if fd, ok := n.(*ast.FuncDecl); ok && fd.Name.Name == "step" {
				return false // reads slots for callers that run it inside Do (checked below)
			}
			stack = append(stack, n)
			if what := secretUse(n); what != "" {
				checked++
				if !insideDo(stack) {
					t.Errorf("%s: %s outside secret.Do", fset.Position(n.Pos()), what)
				}
			}
			return true
		})
	}
	if checked < 8 {
		t.Fatalf("only %d uses of secrets found: the check has lost track of the code", checked)
	}
}

// secretUse describes n if it reads a slot, checks a DH output, or steps a
// chain.
func secretUse(n ast.Node) string {
	slot := func(e ast.Expr) bool {
		s, ok := e.(*ast.SelectorExpr)
		return ok && s.Sel.Name == "p"
	}
	switch e := n.(type) {
	case *ast.StarExpr:
		if slot(e.X) {
			return "a slot read"
		}
	case *ast.SliceExpr:
		if slot(e.X) {
			return "a slot slice"
		}
	case *ast.CallExpr:
		if s, ok := e.Fun.(*ast.SelectorExpr); ok && (s.Sel.Name == "IsZero" || s.Sel.Name == "step") {
			return s.Sel.Name
		}
	}
	return ""
}

// insideDo reports whether the innermost function literal around the node
// is the argument of a call secret.Do.
func insideDo(stack []ast.Node) bool {
	for i := len(stack) - 1; i > 0; i-- {
		if lit, ok := stack[i].(*ast.FuncLit); ok {
			call, ok := stack[i-1].(*ast.CallExpr)
			if !ok || len(call.Args) != 1 || call.Args[0] != lit {
				return false
			}
			s, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return false
			}
			pkg, ok := s.X.(*ast.Ident)
			return ok && pkg.Name == "secret" && s.Sel.Name == "Do"
		}
	}
	return false
}
