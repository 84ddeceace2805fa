"""One jaxpr interpreter for the rewrites that need to see inside ``loss_fn`` (convolution layouts, K-FAC's layer
inputs and outputs): evaluate a jaxpr equation by equation, inlining nested ``jit`` calls, with a hook that may
replace any equation's evaluation."""

from __future__ import annotations

from typing import Any, Callable, Optional

from jax.extend import core as jcore
from jax.extend.core import primitives

INLINED = (primitives.jit_p, primitives.closed_call_p)
Visit = Callable[[Any, list], Optional[list]]  # (equation, input values) -> output values, or None to bind as is


def inner_jaxpr(eqn: Any) -> Any:
    """The closed jaxpr of an inlined call equation."""
    return eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))


def bind(eqn: Any, inputs: list) -> Any:
    """The equation's primitive applied to ``inputs``, in the equation's context (one output or a list)."""
    with eqn.ctx.manager:
        return eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))


def evaluate(jaxpr: Any, consts: list, args: list, visit: Visit) -> list:
    """Evaluate ``jaxpr`` on ``args``; ``visit`` sees every equation outside nested calls (which are inlined) and
    returns its outputs, or None for the primitive's own evaluation. Equations inside other higher-order primitives
    (``scan``, ``while``, ``cond``) are evaluated by the primitive, unseen."""
    env: dict = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        if eqn.primitive in INLINED:
            inner = inner_jaxpr(eqn)
            outputs = evaluate(inner.jaxpr, inner.consts, inputs, visit)
        else:
            outputs = visit(eqn, inputs)
            if outputs is None:
                outputs = bind(eqn, inputs)
                if not eqn.primitive.multiple_results:
                    outputs = [outputs]
        env.update(zip(eqn.outvars, outputs))
    return [read(v) for v in jaxpr.outvars]


def equations(jaxpr: Any):
    """Every equation of ``jaxpr`` outside nested calls, in evaluation order (calls inlined)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive in INLINED:
            yield from equations(inner_jaxpr(eqn).jaxpr)
        else:
            yield eqn
