"""String nodes: join, split, replace, and dynamic prompts (`{a|b}` variants)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import model_validator

from invokeai_core import BaseInvocation, InputField, invocation
from invokeai_nodes.primitives import StringCollectionOutput, StringOutput
from invokeai_nodes.validation import InvalidInputError, check_when_built

if TYPE_CHECKING:
    from typing import Self

    from invokeai_core import InvocationContext


@invocation("string_join", title="Join Strings", tags=["string", "join"], category="strings", version="1.0.0")
class StringJoinInvocation(BaseInvocation):
    """Joins strings with a separator. Connect a `collect` node to join the outputs of several nodes."""

    strings: list[str] = InputField(default=[], description="The strings to join, in order")
    separator: str = InputField(default="", description="Put between each two strings (e.g. ' ' or ', ')")

    def invoke(self, context: InvocationContext) -> StringOutput:
        return StringOutput(value=self.separator.join(self.strings))


@invocation("string_split", title="Split String", tags=["string", "split"], category="strings", version="1.0.0")
class StringSplitInvocation(BaseInvocation):
    """Splits a string into a collection (e.g. a comma-separated list of subjects to iterate over)."""

    string: str = InputField(default="", description="The string to split", ui_component="textarea")
    delimiter: str = InputField(default=",", description="Split at each occurrence; empty: at runs of whitespace")
    max_splits: int = InputField(default=-1, ge=-1, description="Split at most this many times; -1: no limit")
    strip: bool = InputField(default=True, description="Remove whitespace around each part")

    def invoke(self, context: InvocationContext) -> StringCollectionOutput:
        parts = self.string.split(self.delimiter or None, self.max_splits)
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
    def _check_regex(self) -> Self:
        check_when_built(self, self._compile, needs=("search_string",))
        return self

    def _compile(self) -> re.Pattern[str]:
        flags = 0 if self.case_sensitive else re.IGNORECASE
        if not self.use_regex:
            return re.compile(re.escape(self.search_string), flags)
        try:
            pattern = re.compile(self.search_string, flags)
        except re.error as e:
            raise InvalidInputError("string_replace", "search_string", f"not a valid regular expression: {e}") from None
        try:
            pattern.sub(self.replace_string, "")  # parses the template: an unknown group fails here
        except (re.error, IndexError) as e:
            raise InvalidInputError("string_replace", "replace_string", f"not a valid replacement: {e}") from None
        return pattern

    def invoke(self, context: InvocationContext) -> StringOutput:
        pattern = self._compile()
        if self.use_regex:
            return StringOutput(value=pattern.sub(self.replace_string, self.string))
        # A function replacement keeps the text literal ("\\1" in plain mode means backslash-one).
        return StringOutput(value=pattern.sub(lambda _: self.replace_string, self.string))


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

    def invoke(self, context: InvocationContext) -> StringCollectionOutput:
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


NODES: list[type[BaseInvocation]] = [
    StringJoinInvocation,
    StringSplitInvocation,
    StringReplaceInvocation,
    DynamicPromptInvocation,
]
