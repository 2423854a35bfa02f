"""A decoder's chat template as the text around one user turn, so training and the exported graph apply it with
string joins (a SavedModel cannot run Jinja).

The GGUF file's template (tokenizer.chat_template, Jinja) is rendered once, in Python, for one user message whose
content is a marker; the text before the marker is the prompt's prefix and the text after it (with the generation
prompt, e.g. "<|im_start|>assistant\\n") its suffix. Every prompt is then prefix + prompt + suffix, token for token
what the template gives for a one-turn conversation, system prompt included if the template adds a default one.
"""

import dataclasses

from tfft.errors import UserError

_MARKER = "\ue000tfft-prompt\ue001"  # private-use characters: no real prompt contains them


@dataclasses.dataclass(frozen=True)
class ChatFormat:
  """The text around a prompt: a model is asked `prefix + prompt + suffix` and answers after it."""
  prefix: str
  suffix: str

  def apply(self, prompt: str) -> str:
    return self.prefix + prompt + self.suffix


def chat_format(template: str, *, where: str, bos_token: str = "", eos_token: str = "") -> ChatFormat:
  """Renders a Jinja chat template around one user turn, with the generation prompt.

  Args:
    template: the tokenizer's chat template; empty gives a plain format ("" + prompt + "\\n").
    where: what to name in errors (e.g. "--backbone=smollm2-135m").
    bos_token, eos_token: the tokenizer's, for templates that write them.

  Raises:
    UserError: when the template does not render, or does not place the user's content exactly once.
  """
  if not template:
    return ChatFormat("", "\n")
  try:
    import jinja2  # pylint: disable=g-import-not-at-top
    from jinja2 import sandbox  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(f"{where}: applying its chat template needs jinja2: pip install jinja2") from None

  def raise_exception(message):
    raise jinja2.TemplateError(message)

  # Hugging Face renders chat templates in a sandbox with these globals; the file's template is data, not code.
  env = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
  env.globals["raise_exception"] = raise_exception
  try:
    text = env.from_string(template).render(messages=[{"role": "user", "content": _MARKER}],
                                            add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token)
  except jinja2.TemplateError as e:
    raise UserError(f"{where}: its chat template does not render ({e}); use a GGUF file with a working "
                    "tokenizer.chat_template") from None
  if text.count(_MARKER) != 1:
    raise UserError(f"{where}: its chat template does not place the user's message exactly once; tfft cannot "
                    "apply it")
  prefix, suffix = text.split(_MARKER)
  return ChatFormat(prefix, suffix)
