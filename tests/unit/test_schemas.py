"""The schema comparison's statements that need no server: computed defaults, relaxed drops, the carrying order."""

from __future__ import annotations

from ferry.schemas import Difference, computed_default_warning, in_carrying_order, relaxed


def column(default: str | None, generated: bool = False) -> dict:
    return {"column": "c", "default": default, "generated": generated}


def test_a_default_that_calls_a_function_is_named_and_a_constant_one_is_not():
    for computed in ("now()", "gen_random_uuid()", "nextval('t_c_seq'::regclass)", "(random() * 10)"):
        warning = computed_default_warning("public.t", column(computed))
        assert f"public.t.c's default {computed} is computed" in warning
        assert "copy the source's values of c into them before D-day" in warning
    for constant in (None, "'none'::text", "0", "'{}'::jsonb", "'f(x)'::text", "'it''s (not) a call'::text"):
        assert computed_default_warning("public.t", column(constant)) == "", constant
    assert computed_default_warning("public.t", column("(a + b)", generated=True)) == ""


def test_a_dropped_not_null_column_is_first_made_nullable_on_the_target():
    dropped = Difference(
        "public.t", "public.t.c: only on the target", 'ALTER TABLE public.t DROP COLUMN "c"', "drop column"
    )
    made = relaxed(dropped)
    assert made.fix == 'ALTER TABLE public.t ALTER COLUMN "c" DROP NOT NULL'
    assert made.kind == "column"


def test_the_carrying_order_puts_what_the_apply_needs_first_and_drops_last():
    kinds = ["drop column", "view", "drop view", "index", "column", "function", "partition", "extension", "rename"]
    ordered = [d.kind for d in in_carrying_order([Difference("t", k, "x", k) for k in kinds])]
    assert ordered == [
        "extension",
        "function",
        "partition",
        "rename",
        "column",
        "index",
        "view",
        "drop view",
        "drop column",
    ]
