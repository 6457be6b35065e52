"""String nodes: join, split, replace, and dynamic prompts (`{a|b}` variants).

Every string they take or make is at most `limits.string_length` characters, and every collection at
most `limits.collection_items` items (`invokeai_nodes.limits`), checked before the work.

Regular expressions run on the `regex` module (imported when a node needs it) rather than `re`: it
accepts the same syntax (its VERSION0 mode is `re`'s), matches patterns such as `(a+)+$` without
exponential backtracking, takes a `timeout` (`limits.regex_seconds`) for the patterns that still
backtrack, and releases the GIL while it matches (`concurrent=True`), so a slow pattern never stalls
the server's other threads. RE2 (`google-re2`) would be linear-time by construction, but it refuses
backreferences and lookaround, which existing graphs may use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationInfo, model_validator

from invokeai_core import BaseInvocation, InputField, invocation
from invokeai_nodes.limits import check_items, check_length, limits
from invokeai_nodes.primitives import StringCollectionOutput, StringOutput
from invokeai_nodes.validation import InvalidInputError, check_when_built

if TYPE_CHECKING:
    from typing import Self

    from invokeai_core import InvocationContext

#: How often (in matches) a replacement checks whether its session was canceled.
CANCEL_CHECK_EVERY = 1024


class NodeCanceledError(RuntimeError):
    """The session was canceled while the node worked."""


@invocation("string_join", title="Join Strings", tags=["string", "join"], category="strings", version="1.0.0")
class StringJoinInvocation(BaseInvocation):
    """Joins strings with a separator. Connect a `collect` node to join the outputs of several nodes."""

    strings: list[str] = InputField(default=[], description="The strings to join, in order")
    separator: str = InputField(default="", description="Put between each two strings (e.g. ' ' or ', ')")

    @model_validator(mode="after")
    def _check_size(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, self._check, needs=("strings",))
        return self

    def _check(self, context: InvocationContext | None = None) -> None:
        length = sum(len(x) for x in self.strings) + len(self.separator) * max(0, len(self.strings) - 1)
        check_length("string_join", "strings", length, context)

    def invoke(self, context: InvocationContext) -> StringOutput:
        self._check(context)
        return StringOutput(value=self.separator.join(self.strings))


@invocation("string_split", title="Split String", tags=["string", "split"], category="strings", version="1.0.0")
class StringSplitInvocation(BaseInvocation):
    """Splits a string into a collection (e.g. a comma-separated list of subjects to iterate over)."""

    string: str = InputField(default="", description="The string to split", ui_component="textarea")
    delimiter: str = InputField(default=",", description="Split at each occurrence; empty: at runs of whitespace")
    max_splits: int = InputField(default=-1, ge=-1, description="Split at most this many times; -1: no limit")
    strip: bool = InputField(default=True, description="Remove whitespace around each part")

    @model_validator(mode="after")
    def _check_size(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, self._check, needs=("string",))
        return self

    def _check(self, context: InvocationContext | None = None) -> None:
        check_length("string_split", "string", len(self.string), context)
        if self.delimiter:
            parts = self.string.count(self.delimiter) + 1
            count = parts if self.max_splits < 0 else min(parts, self.max_splits + 1)
            check_items("string_split", "string", count, context)

    def invoke(self, context: InvocationContext) -> StringCollectionOutput:
        self._check(context)
        parts = self.string.split(self.delimiter or None, self.max_splits)
        check_items("string_split", "string", len(parts), context)  # runs of whitespace: counted after
        return StringCollectionOutput(collection=[p.strip() for p in parts] if self.strip else parts)


@invocation(
    "string_replace",
    title="Replace in String",
    tags=["string", "replace", "regex"],
    category="strings",
    version="1.0.0",
)
class StringReplaceInvocation(BaseInvocation):
    """Replaces every occurrence of a text, or of a regular expression, in a string."""

    string: str = InputField(default="", description="The string to search", ui_component="textarea")
    search_string: str = InputField(
        default=" ", min_length=1, description="What to find: plain text, or a regular expression if use_regex"
    )
    replace_string: str = InputField(
        default="", description="The replacement (with use_regex it may refer to groups: \\1, \\g<name>)"
    )
    use_regex: bool = InputField(default=False, description="Treat search_string as a Python regular expression")
    case_sensitive: bool = InputField(default=True, description="Match letter case exactly")

    @model_validator(mode="after")
    def _check_regex(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, self._compile, needs=("search_string",))
        check_when_built(
            self, info, lambda: check_length("string_replace", "string", len(self.string)), needs=("string",)
        )
        return self

    def _compile(self) -> Any:
        import regex

        flags = 0 if self.case_sensitive else regex.IGNORECASE
        if not self.use_regex:
            return regex.compile(regex.escape(self.search_string), flags)
        try:
            pattern = regex.compile(self.search_string, flags)
        except regex.error as e:
            raise InvalidInputError("string_replace", "search_string", f"not a valid regular expression: {e}") from None
        # A match with the pattern's groups (empty), to parse the template: an unknown group fails here.
        groups = {i: f"(?P<{n}>)" for n, i in pattern.groupindex.items()}
        dummy = regex.compile("".join(groups.get(i, "()") for i in range(1, pattern.groups + 1))).match("")
        try:
            dummy.expand(self.replace_string)
        except regex.error as e:
            raise InvalidInputError("string_replace", "replace_string", f"not a valid replacement: {e}") from None
        except IndexError as e:
            reason = f"not a valid replacement: invalid group reference ({e})"
            raise InvalidInputError("string_replace", "replace_string", reason) from None
        return pattern

    def invoke(self, context: InvocationContext) -> StringOutput:
        check_length("string_replace", "string", len(self.string), context)
        pattern = self._compile()
        limit = limits(context)
        budget = limit.string_length - len(self.string)  # how much the replacements may add
        matches = 0

        def replace(match: Any) -> str:
            nonlocal budget, matches
            # With use_regex the template may refer to groups; in plain mode "\\1" is literal text.
            piece: str = match.expand(self.replace_string) if self.use_regex else self.replace_string
            budget -= len(piece) - (match.end() - match.start())
            if budget < 0:
                check_length("string_replace", "replace_string", limit.string_length - budget, context)
            matches += 1
            if matches % CANCEL_CHECK_EVERY == 0 and context.is_canceled():
                raise NodeCanceledError("string_replace: canceled")
            return piece

        try:
            value = pattern.sub(replace, self.string, timeout=limit.regex_seconds, concurrent=True)
        except TimeoutError:
            raise InvalidInputError(
                "string_replace",
                "search_string",
                f"the regular expression ran longer than limits.regex_seconds ({limit.regex_seconds:g} s) on a "
                f"string of {len(self.string)} characters; simplify it (nested repetition such as (a|aa)+ "
                "backtracks exponentially)",
            ) from None
        return StringOutput(value=value)


@invocation(
    "dynamic_prompt",
    title="Dynamic Prompt",
    tags=["string", "prompt", "random", "collection"],
    category="strings",
    version="1.0.0",
    use_cache=False,
)
class DynamicPromptInvocation(BaseInvocation):
    """Expands a template with `{a|b|c}` variants into a collection of prompts.

    Uses the `dynamicprompts` library: `{2$$a|b|c}` picks two, `{a|b}` nests, `${var=...}` sets a
    variable. Combinatorial mode lists every combination in order (up to max_prompts); random mode
    draws max_prompts samples, reproducibly for a given seed. Wildcard files (`__name__`) are not
    supported and stay as written. Never cached, like every random node.
    """

    prompt: str = InputField(description="The template, e.g. 'a {red|blue} {cat|dog}'", ui_component="textarea")
    max_prompts: int = InputField(default=1, ge=1, le=10000, description="The most prompts to produce")
    combinatorial: bool = InputField(default=False, description="Every combination in order, instead of random draws")
    seed: int | None = InputField(default=None, description="Seed of the random draws (None: different each run)")

    @model_validator(mode="after")
    def _check_size(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, self._check, needs=("prompt",))
        return self

    def _check(self, context: InvocationContext | None = None) -> None:
        """Bound the output before generating it: a variable may be used many times (each use repeats
        its value), so a prompt is at most len(template) * (1 + uses of `${`) characters, and a
        variable defined from another one could double at every level, so that is refused."""
        node = "dynamic_prompt"
        check_items(node, "max_prompts", self.max_prompts, context)
        if _nested_variable(self.prompt):
            raise InvalidInputError(
                node,
                "prompt",
                "a variable (${name=...}) may not be defined from another variable: it could grow the "
                "prompt exponentially",
            )
        longest = len(self.prompt) * (1 + self.prompt.count("${"))
        check_length(node, "prompt", longest, context)
        limit = limits(context).output_bytes
        if longest * self.max_prompts > limit:
            raise InvalidInputError(
                node,
                "max_prompts",
                f"{self.max_prompts} prompts of up to {longest} characters could exceed limits.output_mb "
                f"({limit / 2**20:g} MiB)",
            )

    def invoke(self, context: InvocationContext) -> StringCollectionOutput:
        self._check(context)
        from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator
        from dynamicprompts.parser.config import ParserConfig
        from pyparsing import ParseBaseException

        # A wildcard marker that cannot occur in text: without wildcard files, dynamicprompts would
        # repeat an unresolved `__name__` prompt max_prompts times instead of keeping it as text.
        config = ParserConfig(wildcard_wrap="\x00")
        try:
            if self.combinatorial:
                prompts = CombinatorialPromptGenerator(parser_config=config).generate(
                    self.prompt, max_prompts=self.max_prompts
                )
            else:
                prompts = RandomPromptGenerator(seed=self.seed, parser_config=config).generate(
                    self.prompt, num_images=self.max_prompts
                )
        except ParseBaseException as e:
            raise InvalidInputError("dynamic_prompt", "prompt", f"cannot be parsed: {e}") from None
        return StringCollectionOutput(collection=[str(p) for p in prompts])


def _nested_variable(template: str) -> bool:
    """Whether a `${name=...}` definition in `template` contains `${` (a use of another variable)."""
    start = template.find("${")
    while start >= 0:
        head = template[start + 2 : start + 2 + 200]
        name, eq, _ = head.partition("=")
        if eq and name.strip().replace("_", "").isalnum() and "}" not in name:
            depth, i = 1, start + 2 + len(name) + 1
            while i < len(template) and depth:
                if template.startswith("${", i):
                    return True
                depth += {"{": 1, "}": -1}.get(template[i], 0)
                i += 1
        start = template.find("${", start + 2)
    return False


NODES: list[type[BaseInvocation]] = [
    StringJoinInvocation,
    StringSplitInvocation,
    StringReplaceInvocation,
    DynamicPromptInvocation,
]
