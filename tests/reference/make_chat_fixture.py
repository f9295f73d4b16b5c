#!/usr/bin/python3
"""Regenerate the committed chat-template fixture tests/fixtures/chat/chat_templates.json (not run by ctest).

For each case (a model's own chat template and a vocabulary of that family) and each conversation, the
expected token ids are what Hugging Face transformers' own `apply_chat_template(..., tokenize=True)` returns:
transformers renders the Jinja template (its sandboxed environment: trim_blocks, lstrip_blocks, loopcontrols,
raise_exception, strftime_now) and tokenizes the string with add_special_tokens=False, special tokens in it
parsed as such. The tokenizer is the one transformers builds from the llama.cpp vocabulary GGUF itself
(`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, which needs the `gguf` package), with its BOS/EOS set
to the ids the GGUF names (transformers 4.46.3 mislabels them for these vocab-only files), and, for the Llama-3
vocabulary (GGUF pre-tokenizer `llama-bpe`), the pre-tokenizer and `ignore_merges` of Meta's tokenizer.json
restored: transformers 4.46.3 converts that GGUF with GPT-2's ByteLevel regex, which splits "\n\n" in two
(198 198) where Llama-3 has one token (271). The rendered text
is stored too, for reading and debugging. tests/unit/test_chat.c renders every conversation with
data/chat.h and must produce exactly these ids.

Templates (`template`): where a vocabulary GGUF carries one, its own `tokenizer.chat_template` (qwen2:
ggml-vocab-qwen2.gguf; smollm2: SmolLM2-135M-Instruct.Q4_1.gguf); otherwise the text below, each as its
model's tokenizer_config.json / GGUF ships it:
  qwen2.5    Qwen/Qwen2.5-0.5B-Instruct (verbatim, from the GGUF's tokenizer.chat_template)
  qwen3      Qwen/Qwen3-0.6B (transcribed: the tool, think and generation branches as published)
  llama3     meta-llama/Meta-Llama-3-8B-Instruct
  llama3.2   meta-llama/Llama-3.2-1B-Instruct (verbatim, from the GGUF); rendered with date_string
             "26 Jul 2024" so the file does not depend on the day it was made
  llama2     meta-llama/Llama-2-7b-chat-hf
  tinyllama  TinyLlama/TinyLlama-1.1B-Chat-v1.0 (verbatim, from the GGUF)
  mistral    mistralai/Mistral-7B-Instruct-v0.1
The vocabularies are those of ../shared/data (llama-cpp-vocab/*.gguf, smollm2/): the Mistral template is
rendered over the Llama-2 SentencePiece vocabulary, which has the same <s>, </s> and text-only [INST].

Message contents avoid control-token spellings on purpose: transformers would parse "<|im_end|>" typed in a
message as the control token, trinity deliberately does not (test_chat.c checks that separately).

Needs transformers (4.46.3 was used, with Debian's python3-torch 1.13), jinja2 and gguf:
    python3 -m venv --system-site-packages /tmp/hfvenv && /tmp/hfvenv/bin/pip install transformers==4.46.3
    /tmp/hfvenv/bin/pip install jinja2 gguf
    /tmp/hfvenv/bin/python tests/reference/make_chat_fixture.py ../shared/data tests/fixtures/chat/chat_templates.json
"""

import json
import os
import struct
import sys

import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

# Llama-3's tokenizer.json pre-tokenizer (meta-llama/Meta-Llama-3-8B-Instruct), with model.ignore_merges = true
LLAMA3_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
                                           "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}

QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

QWEN3 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
          "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
          "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

LLAMA32 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
          "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
          "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

TINYLLAMA = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
             "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
             "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
             "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")

MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
           "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")

SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one line."}
TURNS = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "  And of Japan?  Reply with the city only.\n"},
    {"role": "assistant", "content": "Tokyo (東京)."},
    {"role": "user", "content": "Thanks! Now count: 1, 22, 333, 4444."},
]
SFT = [
    {"role": "user", "content": "Write a haiku about autumn."},
    {"role": "assistant", "content": "Crisp leaves drift and fall\nwhispering of colder days\nthe maple burns red"},
    {"role": "user", "content": "Translate \"hello\" to French and Spanish."},
    {"role": "assistant", "content": "French: bonjour\nSpanish: hola"},
    {"role": "user", "content": "Résumé of the above in 5 words?"},
    {"role": "assistant", "content": "  A haiku, then two greetings.  "},
]
THINK = [
    {"role": "system", "content": "Think before you answer."},
    {"role": "user", "content": "2 + 2?"},
    {"role": "assistant", "content": "<think>\nSmall sum.\n</think>\n\n4"},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "<think>\nAdd three twice.\n</think>\n\n6"},
]

# name, family, vocabulary, template (None: the GGUF's own), conversations (messages, add_generation_prompt)
WITH_SYSTEM = [([SYSTEM] + TURNS, True), (TURNS, True), (SFT, False)]
NO_SYSTEM = [(TURNS, True), (SFT, False), (SFT[:5], True)]
CASES = [
    ("qwen2", "chatml", "llama-cpp-vocab/ggml-vocab-qwen2.gguf", None, WITH_SYSTEM),
    ("qwen2.5", "chatml", "llama-cpp-vocab/ggml-vocab-qwen2.gguf", QWEN25, WITH_SYSTEM),
    ("qwen3", "chatml", "llama-cpp-vocab/ggml-vocab-qwen2.gguf", QWEN3, WITH_SYSTEM + [(THINK, False), (THINK[:4], True)]),
    ("smollm2", "chatml", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", None, WITH_SYSTEM),
    ("llama3", "llama3", "llama-cpp-vocab/ggml-vocab-llama-bpe.gguf", LLAMA3, WITH_SYSTEM),
    ("llama3.2", "llama3", "llama-cpp-vocab/ggml-vocab-llama-bpe.gguf", LLAMA32, WITH_SYSTEM),
    ("llama2", "llama2", "llama-cpp-vocab/ggml-vocab-llama-spm.gguf", LLAMA2, WITH_SYSTEM),
    ("tinyllama", "zephyr", "llama-cpp-vocab/ggml-vocab-llama-spm.gguf", TINYLLAMA, WITH_SYSTEM),
    ("mistral", "mistral", "llama-cpp-vocab/ggml-vocab-llama-spm.gguf", MISTRAL, NO_SYSTEM),
]
DATE = "26 Jul 2024"


def gguf_strings(path, keys):
    """The string / uint values of the given metadata keys of a GGUF file (a minimal reader)."""
    out = {}
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
        f.read(4)
        _, n_kv = struct.unpack("<QQ", f.read(16))
        sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
        fmts = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

        def rstr():
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8")

        def rval(t):
            if t == 8:
                return rstr()
            if t == 9:
                et, n = struct.unpack("<IQ", f.read(12))
                if et == 8:
                    return [rstr() for _ in range(n)]
                f.seek(n * sizes[et], 1)
                return None
            return struct.unpack("<" + fmts[t], f.read(sizes[t]))[0]

        for _ in range(n_kv):
            k = rstr()
            (t,) = struct.unpack("<I", f.read(4))
            v = rval(t)
            if k in keys:
                out[k] = v
    return out


def main():
    shared, out_path = sys.argv[1], sys.argv[2]
    cases = []
    tokenizers = {}
    for name, family, vocab, template, convs in CASES:
        path = os.path.join(shared, vocab)
        meta = gguf_strings(path, {"tokenizer.chat_template", "tokenizer.ggml.bos_token_id",
                                   "tokenizer.ggml.eos_token_id", "tokenizer.ggml.tokens", "tokenizer.ggml.pre"})
        if template is None:
            template = meta["tokenizer.chat_template"]
        if vocab not in tokenizers:
            tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
            toks = meta["tokenizer.ggml.tokens"]
            tok.bos_token = toks[meta["tokenizer.ggml.bos_token_id"]]
            tok.eos_token = toks[meta["tokenizer.ggml.eos_token_id"]]
            if meta.get("tokenizer.ggml.pre") == "llama-bpe":
                j = json.loads(tok.backend_tokenizer.to_str())
                j["pre_tokenizer"] = LLAMA3_PRE
                j["model"]["ignore_merges"] = True
                tok._tokenizer = Tokenizer.from_str(json.dumps(j))
                assert tok.encode("\n\n", add_special_tokens=False) == [271]
            tokenizers[vocab] = tok
        tok = tokenizers[vocab]
        tok.chat_template = template
        conversations = []
        for messages, gen in convs:
            kw = {"date_string": DATE} if "date_string" in template else {}
            text = tok.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False, **kw)
            ids = tok.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True, **kw)
            conversations.append({"messages": messages, "add_generation_prompt": gen, "text": text, "ids": ids})
        cases.append({"name": name, "family": family, "vocab": vocab, "bos": tok.bos_token, "eos": tok.eos_token,
                      "date": DATE if "date_string" in template else None, "template": template,
                      "conversations": conversations})
        print(f"{name}: {family}, {len(conversations)} conversations, {sum(len(c['ids']) for c in conversations)} ids")
    doc = {"generator": "tests/reference/make_chat_fixture.py", "transformers": transformers.__version__,
           "cases": cases}
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
