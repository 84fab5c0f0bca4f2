"""The official openai Python SDK's Responses API against exai-ws's /v1/responses (run by
tests/responses.rs).

Usage: openai_responses.py MODE BASE_URL API_KEY [SECOND_BASE_URL]. Prints one JSON object with
what the SDK saw. The test queues the fake upstream's replies in the order of the calls below.

MODE `session`: a plain response, a stream through the SDK's helper, a function-call round
trip, `previous_response_id` across two calls, retrieve and delete, and errors as the SDK's
typed exceptions. MODE `two-daemons`: a stored response made on BASE_URL, continued, retrieved
and deleted on SECOND_BASE_URL.
"""
import json
import sys

import openai

mode, base_url, api_key = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0)
out = {}


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "body": e.body}
    return None


if mode == "two-daemons":
    other = openai.OpenAI(base_url=sys.argv[4] + "/v1", api_key=api_key, max_retries=0)
    first = client.responses.create(model="glm-4.6", input="my name is Ada")
    second = other.responses.create(model="glm-4.6", previous_response_id=first.id,
                                    input="what is my name?")
    out["second"] = {"text": second.output_text, "previous": second.previous_response_id}
    out["retrieved"] = other.responses.retrieve(first.id).output_text
    other.responses.delete(first.id)
    out["after_delete"] = error_of(lambda: client.responses.retrieve(first.id))
    print(json.dumps(out))
    sys.exit(0)

# 1. A plain response, with instructions.
plain = client.responses.create(model="glm-4.6", instructions="be brief", input="say hello")
out["plain"] = {"id": plain.id, "text": plain.output_text, "status": plain.status,
                "input_tokens": plain.usage.input_tokens, "output_tokens": plain.usage.output_tokens,
                "total_tokens": plain.usage.total_tokens, "model": plain.model}

# 2. A stream through the SDK's helper, with reasoning.
events = []
deltas = 0
with client.responses.stream(model="glm-4.6", input="think, then answer",
                             reasoning={"effort": "high", "summary": "auto"}) as stream:
    for event in stream:
        events.append(event.type)
        if event.type == "response.output_text.delta":
            deltas += 1
    final = stream.get_final_response()
out["stream"] = {"events": events, "deltas": deltas, "text": final.output_text,
                 "kinds": [item.type for item in final.output],
                 "reasoning": [s.text for item in final.output if item.type == "reasoning"
                               for s in item.summary],
                 "usage": final.usage.total_tokens if final.usage else None}

# 3. A function call round trip: the call out, its output back in.
tools = [{"type": "function", "name": "get_weather", "description": "The weather in a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}, "strict": False}]
asked = [{"role": "user", "content": "what is the weather in Paris?"}]
first = client.responses.create(model="kimi-k2-0905-preview", input=asked, tools=tools, store=False)
call = next(item for item in first.output if item.type == "function_call")
answer = client.responses.create(
    model="kimi-k2-0905-preview", tools=tools, store=False,
    input=asked + [item.model_dump(exclude_none=True) for item in first.output]
    + [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 C"}])
out["tools"] = {"name": call.name, "arguments": json.loads(call.arguments), "call_id": call.call_id,
                "answer": answer.output_text}

# 4. previous_response_id across two calls, then retrieve and delete.
first = client.responses.create(model="glm-4.6", input="my name is Ada")
second = client.responses.create(model="glm-4.6", previous_response_id=first.id,
                                  input="what is my name?")
out["continued"] = {"text": second.output_text, "previous": second.previous_response_id}
out["retrieved"] = client.responses.retrieve(first.id).output_text
deleted = client.responses.delete(first.id)
out["deleted"] = deleted is None
out["after_delete"] = error_of(lambda: client.responses.retrieve(first.id))
out["unstored"] = error_of(lambda: client.responses.retrieve(plain.id + "x"))

# 5. Errors, as the SDK's typed exceptions.
out["unknown_model"] = error_of(lambda: client.responses.create(model="no-such-model", input="x"))
out["unknown_previous"] = error_of(lambda: client.responses.create(
    model="glm-4.6", input="x", previous_response_id="resp_nope"))
out["no_input"] = error_of(lambda: client.responses.create(model="glm-4.6"))
print(json.dumps(out))
