"""Which events a handler can react to, so the loop can skip calls that would do nothing.

Most handlers are a chain of tests on the event number::

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, b"hi")
        elif ev in (MG_EV_ACCEPT, MG_EV_CLOSE):
            log(conn)

For any other event such a handler runs nothing but its comparisons, so calling it is pure
cost: MG_EV_POLL alone would be one Python call per connection per iteration, which makes
an iteration's cost grow with the number of idle connections.  `event_mask()` reads the
handler's source and, when the *whole* body is such a chain, returns the set of events the
chain can match; the binding then delivers only those (and MG_EV_POLL walks only the
connections that want it).  Skipping is invisible to the program: for a skipped event the
handler would have evaluated side-effect-free comparisons of two ints and returned None.

Anything else is delivered every event, as before: a body with other statements, an
``else:`` branch, a test that is not a comparison of the event parameter with int literals
or our ``MG_EV_*`` constants (``ev != X``, ``f(ev)``, ``x and ev == A``, ``ev == TARGET``
where the program could rebind TARGET), source that is
unavailable or does not compile to the handler's own bytecode (closures, exec'd code,
edited files), callables that are not Python functions or methods.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import types

ALL = -1
"""Deliver every event."""

MAX_EVENT = 63
"""Events above this are always delivered (the mask has 64 bits)."""

_cache: dict[tuple[types.CodeType, int], int] = {}
_CACHE_LIMIT = 512


class _Unknown(Exception):
    """The handler is not of the analysable shape: deliver everything."""


def event_mask(handler: object) -> int:
    """Bit e is set if `handler` may do something for event e; ALL (-1) if unknown."""
    func = handler.__func__ if inspect.ismethod(handler) else handler
    if not inspect.isfunction(func):
        return ALL
    key = (func.__code__, id(func.__globals__))
    mask = _cache.get(key)
    if mask is None:
        try:
            mask = _analyse(func, skip=1 if inspect.ismethod(handler) else 0)
        except Exception:  # noqa: BLE001 - any failure means "not analysable"
            mask = ALL
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[key] = mask
    return mask


def _analyse(func: types.FunctionType, skip: int) -> int:
    code = func.__code__
    plain = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
    if code.co_flags & plain or code.co_argcount < skip + 3:
        raise _Unknown
    ev_name = code.co_varnames[skip + 1]
    node = _function_node(func)
    return _Chain(func, ev_name).body(node.body)


def _function_node(func: types.FunctionType) -> ast.FunctionDef:
    source = textwrap.dedent(inspect.getsource(func))
    tree = ast.parse(source)
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
        raise _Unknown
    # The text must be the code that runs: compiled on its own it has to give the
    # handler's exact bytecode (an edited file or exec'd text would not).  A closure
    # is compiled inside a stand-in for its enclosing function, so that its free
    # variables stay free variables.
    free = func.__code__.co_freevars
    if free:
        outer = "def __outer__():\n" + "".join(f" {name} = None\n" for name in free)
        source = outer + textwrap.indent(source, " ") + f" return {tree.body[0].name}\n"
    module = compile(source, "<handler>", "exec")
    compiled = _find_code(module, func.__code__.co_name)
    if compiled is None or not _same_code(compiled, func.__code__):
        raise _Unknown
    return tree.body[0]


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Same instructions, names and constants (nested code compared the same way)."""
    if (a.co_code, a.co_names, a.co_varnames, a.co_freevars) != (
        b.co_code,
        b.co_names,
        b.co_varnames,
        b.co_freevars,
    ) or len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts, strict=True):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_code(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _find_code(code: types.CodeType, name: str) -> types.CodeType | None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found = const if const.co_name == name else _find_code(const, name)
            if found is not None:
                return found
    return None


class _Chain:
    """Reads `if ev ...: elif ...:` chains; raises _Unknown on anything else."""

    def __init__(self, func: types.FunctionType, ev_name: str) -> None:
        self.func = func
        self.ev = ev_name

    def body(self, stmts: list[ast.stmt]) -> int:
        if stmts and _is_docstring(stmts[0]):
            stmts = stmts[1:]
        mask = 0
        for stmt in stmts:
            if isinstance(stmt, (ast.Pass, ast.Global, ast.Nonlocal)):
                continue
            if not isinstance(stmt, ast.If):
                raise _Unknown
            mask |= self.chain(stmt)
        return mask

    def chain(self, node: ast.If) -> int:
        mask = self.test(node.test)
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            return mask | self.chain(node.orelse[0])  # elif
        if node.orelse:
            raise _Unknown  # an else branch runs for every other event
        return mask

    def test(self, expr: ast.expr) -> int:
        if isinstance(expr, ast.BoolOp) and isinstance(expr.op, ast.Or):
            mask = 0
            for value in expr.values:
                mask |= self.test(value)
            return mask
        if isinstance(expr, ast.BoolOp):
            # `and`: only the first operand runs for every event, so it must be the guard.
            return self.test(expr.values[0])
        if isinstance(expr, ast.Compare) and len(expr.ops) == 1:
            return self.compare(expr.left, expr.ops[0], expr.comparators[0])
        raise _Unknown

    def compare(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> int:
        if isinstance(op, (ast.Eq, ast.Is)):
            if self.is_ev(left):
                return _bit(self.value(right))
            if self.is_ev(right):
                return _bit(self.value(left))
        literal = (ast.Tuple, ast.List, ast.Set)
        if isinstance(op, ast.In) and self.is_ev(left) and isinstance(right, literal):
            mask = 0
            for elt in right.elts:
                mask |= _bit(self.value(elt))
            return mask
        raise _Unknown

    def is_ev(self, expr: ast.expr) -> bool:
        return isinstance(expr, ast.Name) and expr.id == self.ev

    def value(self, expr: ast.expr) -> int:
        """The event number an operand stands for: an int literal or an MG_EV_* constant.

        Only values that cannot change later are trusted: the answer is computed once, so
        `ev == SOME_GLOBAL` (which the program may rebind) gets every event instead.
        """
        if isinstance(expr, ast.Constant) and type(expr.value) is int:
            return expr.value
        if isinstance(expr, ast.Name) and expr.id.startswith("MG_EV_"):
            return _constant(expr.id, self.lookup(expr.id))
        if isinstance(expr, ast.Attribute) and expr.attr.startswith("MG_EV_"):
            if self.value_object(expr.value) not in _modules():
                raise _Unknown
            return _constant(expr.attr, getattr(self.value_object(expr.value), expr.attr))
        raise _Unknown

    def lookup(self, name: str) -> object:
        free, cells = self.func.__code__.co_freevars, self.func.__closure__
        if name in free and cells is not None:
            return cells[free.index(name)].cell_contents
        return self.func.__globals__[name]  # KeyError: not analysable

    def value_object(self, expr: ast.expr) -> object:
        if isinstance(expr, ast.Name):
            return self.lookup(expr.id)
        if isinstance(expr, ast.Attribute):
            return getattr(self.value_object(expr.value), expr.attr)
        raise _Unknown


def _modules() -> tuple[object, ...]:
    names = ("cymongoose", "cymongoose._mongoose")
    return tuple(sys.modules[name] for name in names if name in sys.modules)


def _constant(name: str, found: object) -> int:
    """`found` if it is the value of our constant `name`, else not analysable."""
    ours = getattr(sys.modules.get("cymongoose._mongoose"), name, None)
    if type(found) is not int or found != ours:
        raise _Unknown
    return found


def _bit(event: int) -> int:
    if not 0 <= event <= MAX_EVENT:
        raise _Unknown
    return 1 << event


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )
