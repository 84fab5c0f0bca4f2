"""The official Anthropic Python SDK against exai-ws's /v1/messages (run by tests/anthropic_sdk.rs).

Usage: anthropic_sdk.py BASE_URL API_KEY. Prints one JSON object with what the SDK saw.
The test queues the fake upstream's replies in the order of the calls below.
"""
import json
import sys

import anthropic

base_url, api_key = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0)
out = {}

# 1. A plain message, with Claude Code's default model name.
plain = client.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=200,
    messages=[{"role": "user", "content": "say hello"}],
)
out["plain"] = {"text": plain.content[0].text, "stop_reason": plain.stop_reason,
                "input_tokens": plain.usage.input_tokens, "output_tokens": plain.usage.output_tokens}

# 2. A stream through the SDK's accumulator, with thinking on.
with client.messages.stream(
    model="glm-4.6",
    max_tokens=2048,
    thinking={"type": "enabled", "budget_tokens": 1024},
    messages=[{"role": "user", "content": "think, then answer"}],
) as stream:
    texts = [t for t in stream.text_stream]
    final = stream.get_final_message()
out["stream"] = {"pieces": len(texts), "blocks": [b.type for b in final.content],
                 "thinking": final.content[0].thinking if final.content[0].type == "thinking" else None,
                 "text": final.content[-1].text, "stop_reason": final.stop_reason,
                 "output_tokens": final.usage.output_tokens}

# 3. A tool round trip: the model calls the tool (its input streamed in pieces, accumulated by
#    the SDK), the result goes back, the model answers.
tools = [{"name": "get_weather", "description": "The weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
question = {"role": "user", "content": "What is the weather in Paris?"}
with client.messages.stream(model="glm-4.6", max_tokens=500, tools=tools, messages=[question]) as stream:
    call = stream.get_final_message()
use = next(b for b in call.content if b.type == "tool_use")
answer = client.messages.create(
    model="glm-4.6",
    max_tokens=500,
    tools=tools,
    messages=[
        question,
        {"role": "assistant", "content": [b.model_dump() for b in call.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]},
    ],
)
out["tools"] = {"stop_reason": call.stop_reason, "name": use.name, "input": use.input,
                "answer": answer.content[0].text}

# 4. An error, as the SDK's typed exception.
try:
    client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    out["error"] = None
except anthropic.NotFoundError as e:
    out["error"] = {"status": e.status_code, "type": e.body["error"]["type"] if isinstance(e.body, dict) else None}

print(json.dumps(out))
