"""Claiming tasks from a queue shared by the threads of one kernel call.

A task queue is an ``int64`` array ``[next, end]``: the tasks ``[next, end)``
are still to run.  Every thread of a :func:`fastem._parallel.run_tasks` call
runs the same kernel on the same queue, and the kernel takes one task after
another with :func:`claim_task`, an atomic fetch-and-add on ``next``, until
none is left.  A thread therefore calls its kernel once per pass over the
data and never waits for the GIL between tasks, and a core slowed by other
work simply claims fewer tasks.  Each task writes only its own output slice,
so the results do not depend on which thread ran which task.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def claim_task(typingctx, queue):
    """The index of the next task of ``queue``, or -1 when none is left.

    ``queue[0]`` is incremented atomically (LLVM ``atomicrmw add``,
    ``monotonic``: the counter publishes no other memory; the caller's join
    of the threads orders their outputs).  It runs past ``queue[1]`` by one
    per thread at the end, which is harmless.
    """
    if not (
        isinstance(queue, types.Array)
        and queue.ndim == 1
        and queue.dtype == types.int64
        and queue.mutable
    ):
        return None

    def codegen(context, builder, signature, args):
        (queue_type,) = signature.args
        array = context.make_array(queue_type)(context, builder, args[0])
        i64 = ir.IntType(64)
        next_ptr = cgutils.get_item_pointer(
            context, builder, queue_type, array, [ir.Constant(i64, 0)]
        )
        end_ptr = cgutils.get_item_pointer(
            context, builder, queue_type, array, [ir.Constant(i64, 1)]
        )
        task = builder.atomic_rmw("add", next_ptr, ir.Constant(i64, 1), "monotonic")
        end = builder.load(end_ptr)
        left = builder.icmp_signed("<", task, end)
        return builder.select(left, task, ir.Constant(i64, -1))

    return types.int64(queue), codegen
