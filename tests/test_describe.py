"""Class descriptions: the description-file reader and `clipadapt describe` against a fake
OpenAI-compatible server (http.server on 127.0.0.1, in a thread)."""

from __future__ import annotations

import json
import re
import socket
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from clipadapt.describe import (
    ChatClient,
    UnusedDescriptionsWarning,
    chat_completions_url,
    generate_descriptions,
    load_descriptions,
    normalise_class_name,
    parse_descriptions,
    read_class_names,
)
from clipadapt.errors import ClipAdaptError

RUNNER = CliRunner()

# ----------------------------------------------------------------------------- fake server


def bulleted_answer(name: str) -> str:
    """An answer in the mixed formatting real models produce, with a duplicate and a
    preamble: the parser must return exactly the five features, clean, in order."""
    return (f"Here are some descriptions of a {name}:\n\n"
            f"1. A {name} has feature one.\n"
            f"2) A {name} has feature two.\n"
            f"- A {name} has feature three.\n"
            f"• **A {name}** has feature four.\n"
            f"* a {name} has feature one.\n"
            f"(6) A {name} has feature five.\n"
            f"7. A {name} has feature six.\n")


def expected(name: str, n: int = 5) -> list[str]:
    return [f"A {name} has feature {w}." for w in ("one", "two", "three", "four", "five", "six")[:n]]


def completion(content) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()


class FakeLLM:
    """Records every request; answers from `script` (a queue of dicts with status,
    headers, body, delay) and, once it is empty, with a bulleted answer for the class."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    step = fake.script.pop(0) if fake.script else {}
                if step.get("delay"):
                    threading.Event().wait(step["delay"])
                payload = step.get("body")
                if payload is None:
                    prompt = body["messages"][-1]["content"]
                    payload = completion(bulleted_answer(re.search(r'mention "([^"]+)"', prompt).group(1)))
                elif isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(step.get("status", 200))
                for k, v in step.get("headers", {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A client that timed out leaves the handler writing to a closed socket: expected here.
        self.server.handle_error = lambda *a: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm():
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture
def app():
    from clipadapt.cli.main import app as real_app

    return real_app  # the command as users run it


class Sleeps(list):
    """Stands in for time.sleep: records the waits instead of spending them."""

    def __call__(self, seconds):
        self.append(round(seconds, 6))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe(app, llm_url, out, *extra, classes="Red fox,snowy_owl"):
    return RUNNER.invoke(app, ["describe", classes, "--out", str(out), "--endpoint", llm_url, "--model", "fake-7b",
                               "--quiet", *extra])


# ----------------------------------------------------------------------------- describe command


def test_describe_writes_n_clean_descriptions_per_class(app, llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    out = tmp_path / "sub" / "descriptions.json"
    result = describe(app, llm.url, out, "--per-class", "5", "--domain", "animal", "--api-key-env", "TEST_LLM_KEY",
                      "--cache", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert list(data) == ["Red fox", "snowy_owl"]  # keys as given, in order
    assert data["Red fox"] == expected("Red fox")
    assert data["snowy_owl"] == expected("snowy owl")  # underscores become spaces in the prompt
    assert len(llm.requests) == 2
    first = llm.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == "Bearer sk-test"
    assert first["body"]["model"] == "fake-7b" and first["body"]["temperature"] == 0.7
    user = first["body"]["messages"][-1]["content"]
    assert "5 different" in user and "animal" in user and "no numbering" in user
    assert "2 asked, 0 from the cache" in result.output


def test_rerun_hits_the_cache_without_any_request(app, llm, tmp_path):
    out, cache = tmp_path / "d.json", tmp_path / "cache"
    assert describe(app, llm.url, out, "--cache", str(cache)).exit_code == 0
    first = out.read_text()
    out.unlink()
    result = describe(app, llm.url, out, "--cache", str(cache))
    assert result.exit_code == 0, result.output
    assert len(llm.requests) == 2  # both from the first run
    assert out.read_text() == first and "0 asked, 2 from the cache" in result.output


def test_cache_is_keyed_by_model_and_prompt(app, llm, tmp_path):
    cache = tmp_path / "cache"
    assert describe(app, llm.url, tmp_path / "a.json", "--cache", str(cache)).exit_code == 0
    assert describe(app, llm.url, tmp_path / "b.json", "--cache", str(cache), "--domain", "bird").exit_code == 0
    assert len(llm.requests) == 4  # another prompt is another question


def test_interrupted_run_leaves_no_file_and_resumes(app, llm, tmp_path):
    out, cache = tmp_path / "d.json", tmp_path / "cache"
    llm.script = [{}, {"status": 400, "body": json.dumps({"error": {"message": "context too long"}})}]
    result = describe(app, llm.url, out, "--cache", str(cache))
    assert result.exit_code == 2 and "context too long" in result.output
    assert len(llm.requests) == 2  # a 400 is not retried
    assert list(tmp_path.glob("*d.json*")) == []  # neither the output nor a temporary file
    result = describe(app, llm.url, out, "--cache", str(cache))
    assert result.exit_code == 0, result.output
    assert len(llm.requests) == 3  # only the class that failed was asked again
    assert json.loads(out.read_text())["snowy_owl"] == expected("snowy owl")


def test_401_fails_at_once_naming_the_env_var(app, llm, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-wrong")
    llm.script = [{"status": 401, "body": json.dumps({"error": {"message": "Incorrect API key"}})}] * 3
    result = describe(app, llm.url, tmp_path / "d.json", "--api-key-env", "MY_LLM_KEY", "--retries", "4")
    assert result.exit_code == 2
    assert "MY_LLM_KEY" in result.output and "401" in result.output and "Incorrect API key" in result.output
    assert len(llm.requests) == 1 and not (tmp_path / "d.json").exists()


def test_403_without_a_key_says_the_variable_is_unset(llm, monkeypatch):
    monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
    llm.script = [{"status": 403, "body": "forbidden"}]
    client = ChatClient(llm.url, "m", api_key=None, api_key_env="UNSET_KEY_VAR")
    with pytest.raises(ClipAdaptError, match=r"UNSET_KEY_VAR is not set"):
        client.complete([{"role": "user", "content": "hi"}])
    assert "Authorization" not in llm.requests[0]["headers"]


def test_503_is_retried_honouring_retry_after(llm):
    llm.script = [{"status": 503, "headers": {"Retry-After": "0.05"}, "body": "busy"}]
    sleeps = Sleeps()
    client = ChatClient(llm.url, "m", retries=3, backoff=10.0, sleep=sleeps)  # the backoff alone would wait 10 s
    assert client.complete([{"role": "user", "content": 'mention "cat" by name'}]) == bulleted_answer("cat")
    assert len(llm.requests) == 2 and sleeps == [0.05]


def test_retry_after_waits_in_real_time(llm):
    llm.script = [{"status": 429, "headers": {"Retry-After": "0.2"}, "body": "slow down"}]
    client = ChatClient(llm.url, "m", retries=1, backoff=0.0)
    import time
    start = time.monotonic()
    client.complete([{"role": "user", "content": 'mention "cat" by name'}])
    assert time.monotonic() - start >= 0.2 and len(llm.requests) == 2


def test_backoff_doubles_without_retry_after(llm):
    llm.script = [{"status": 500, "body": "oops"}, {"status": 429, "body": "slow"}, {"status": 502, "body": "bad gw"}]
    sleeps = Sleeps()
    client = ChatClient(llm.url, "m", retries=3, backoff=0.01, sleep=sleeps)
    client.complete([{"role": "user", "content": 'mention "cat" by name'}])
    assert len(llm.requests) == 4 and sleeps == [0.01, 0.02, 0.04]


def test_5xx_until_retries_run_out_is_a_clear_error(llm):
    llm.script = [{"status": 503, "body": "down"}] * 3
    client = ChatClient(llm.url, "m", retries=2, backoff=0.0, sleep=Sleeps())
    with pytest.raises(ClipAdaptError, match=r"after 3 attempts \(last error: HTTP 503: down\)"):
        client.complete([{"role": "user", "content": "x"}])
    assert len(llm.requests) == 3


def test_unreachable_endpoint_after_the_configured_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"
    sleeps = Sleeps()
    client = ChatClient(url, "m", retries=2, backoff=0.01, sleep=sleeps)
    with pytest.raises(ClipAdaptError) as err:
        client.complete([{"role": "user", "content": "x"}])
    message = str(err.value)
    assert f"{url}/chat/completions" in message and "after 3 attempts" in message and "--endpoint" in message
    assert client.requests_sent == 3 and sleeps == [0.01, 0.02]


def test_unreachable_endpoint_from_the_cli(app, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = describe(app, url, tmp_path / "d.json", "--retries", "0")
    assert result.exit_code == 2 and "after 1 attempt " in result.output and url in result.output
    assert not (tmp_path / "d.json").exists()


def test_timeout_is_retried(llm):
    llm.script = [{"delay": 0.6}]
    client = ChatClient(llm.url, "m", timeout=0.2, retries=1, backoff=0.0)
    assert "feature one" in client.complete([{"role": "user", "content": 'mention "cat" by name'}])
    assert len(llm.requests) == 2


@pytest.mark.parametrize("body, message", [
    ("<html>not json</html>", "not JSON"),
    (json.dumps({"choices": []}), r"choices\[0\]\.message\.content"),
    (completion(None).decode(), "no text content"),
])
def test_malformed_response_is_a_clear_error_without_retry(llm, body, message):
    llm.script = [{"body": body}]
    client = ChatClient(llm.url, "m", retries=3, backoff=0.0, sleep=Sleeps())
    with pytest.raises(ClipAdaptError, match=message):
        client.complete([{"role": "user", "content": "x"}])
    assert len(llm.requests) == 1


def test_answer_without_sentences_is_an_error_and_not_cached(llm, tmp_path):
    llm.script = [{"body": completion("Sure! Here you go:\n\n1.\n---\n")}]
    client = ChatClient(llm.url, "m", retries=0)
    with pytest.raises(ClipAdaptError, match=r"no usable description of 'cat'"):
        generate_descriptions(["cat"], client, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.json"))
    # The next run asks again and gets a proper answer.
    result = generate_descriptions(["cat"], client, per_class=3, cache_dir=tmp_path / "cache")
    assert result.descriptions == {"cat": expected("cat", 3)} and result.asked == 1


def test_short_answers_are_kept_and_reported(llm, tmp_path):
    llm.script = [{"body": completion("- A cat has whiskers.\n- A cat has a tail.")}]
    result = generate_descriptions(["cat"], ChatClient(llm.url, "m"), per_class=5, cache_dir=tmp_path, progress=True)
    assert result.descriptions["cat"] == ["A cat has whiskers.", "A cat has a tail."] and result.short == {"cat": 2}


def test_endpoint_forms():
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"
    with pytest.raises(ClipAdaptError, match="http://localhost:8000/v1"):
        chat_completions_url("localhost:8000/v1")


# ----------------------------------------------------------------------------- parsing answers


def test_parse_descriptions_handles_common_formats():
    assert parse_descriptions(bulleted_answer("cat"), 5) == expected("cat")
    assert parse_descriptions('```json\n["A cat purrs.", "A cat purrs.", "A cat naps."]\n```') == ["A cat purrs.", "A cat naps."]
    assert parse_descriptions("<think>1. hidden reasoning</think>\n1. A 1.5 m long cat.\n2. A 3-toed cat.") == [
        "A 1.5 m long cat.", "A 3-toed cat."]
    assert parse_descriptions('## Cat\n"A cat has stripes."\n\n---\n') == ["A cat has stripes."]


# ----------------------------------------------------------------------------- description files


def write(path, text):
    path.write_text(text)
    return path


def test_load_descriptions_matches_names_ignoring_case_spaces_underscores(tmp_path):
    f = write(tmp_path / "d.json", json.dumps({"black footed  Albatross": ["  An albatross.  "], "Red_Fox": ["A fox."]}))
    got = load_descriptions(f, ["red fox", "Black_Footed_Albatross"])
    assert got == {"red fox": ["A fox."], "Black_Footed_Albatross": ["An albatross."]}
    assert list(got) == ["red fox", "Black_Footed_Albatross"]
    assert normalise_class_name(" Black_footed  Albatross") == "black footed albatross"


def test_missing_classes_are_listed_with_closest_matches(tmp_path):
    f = write(tmp_path / "d.json", json.dumps({"Red_Fox": ["A fox."], "snowy owl": ["An owl."]}))
    with pytest.raises(ClipAdaptError) as err:
        load_descriptions(f, ["red fox", "snowy owls", "zebra"])
    message = str(err.value)
    assert str(f) in message and "2 of 3 classes" in message
    assert "'snowy owls' (closest: 'snowy owl')" in message and "'zebra' (no close match)" in message


def test_extra_classes_are_reported_or_rejected_when_strict(tmp_path):
    f = write(tmp_path / "d.json", json.dumps({"cat": ["A cat."], "dog": ["A dog."]}))
    with pytest.warns(UnusedDescriptionsWarning, match="'dog'"):
        assert load_descriptions(f, ["cat"]) == {"cat": ["A cat."]}
    with pytest.raises(ClipAdaptError, match=r"not in the class list: 'dog'"):
        load_descriptions(f, ["cat"], strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact fit warns about nothing
        assert load_descriptions(f, ["dog", "cat"]) == {"dog": ["A dog."], "cat": ["A cat."]}


def test_bad_json_names_line_and_column(tmp_path):
    f = write(tmp_path / "d.json", '{\n  "cat": ["A cat."],\n  "dog": ["A dog."\n}\n')
    with pytest.raises(ClipAdaptError, match=rf"{re.escape(str(f))} is not valid JSON: .* at line 4, column 1"):
        load_descriptions(f)


def test_yaml_is_accepted_and_its_errors_located(tmp_path):
    f = write(tmp_path / "d.yaml", "cat:\n  - A cat.\nRed fox:\n  - A fox.\n")
    assert load_descriptions(f, ["Cat", "red_fox"]) == {"Cat": ["A cat."], "red_fox": ["A fox."]}
    bad = write(tmp_path / "bad.yml", "cat:\n  - A cat.\n dog: [\n")
    with pytest.raises(ClipAdaptError, match=r"bad\.yml is not valid YAML: .* at line \d+, column \d+"):
        load_descriptions(bad)


@pytest.mark.parametrize("content, message", [
    ('["A cat."]', "object"),
    ('{"cat": []}', "class 'cat' has an empty list"),
    ('{"cat": "A cat."}', r"single string, not a list"),
    ('{"cat": ["A cat.", 3]}', r"class 'cat', item 2 is a number"),
    ('{"cat": ["A cat.", "  "]}', r"class 'cat', item 2 is an empty string"),
    ('{"cat": ["A cat."], "cat": ["Another."]}', r"'cat' appears more than once"),
    ('{"Cat": ["A cat."], "cat ": ["x"]}', None),  # two keys for one class: ambiguous when matched
    ("", "is empty"),
])
def test_invalid_description_files(tmp_path, content, message):
    f = write(tmp_path / "d.json", content)
    if message is None:
        with pytest.raises(ClipAdaptError, match=r"all match the class 'CAT'"):
            load_descriptions(f, ["CAT"])
        return
    with pytest.raises(ClipAdaptError, match=message) as err:
        load_descriptions(f)
    assert str(f) in str(err.value)


def test_missing_description_file(tmp_path):
    with pytest.raises(ClipAdaptError, match=r"nope\.json not found.*clipadapt describe"):
        load_descriptions(tmp_path / "nope.json")


def test_read_class_names_from_file_or_list(tmp_path):
    f = write(tmp_path / "classes.txt", "# birds\nsnowy_owl\n\n  Red fox  \n")
    assert read_class_names(f) == ["snowy_owl", "Red fox"]
    assert read_class_names("cat, dog ,red fox") == ["cat", "dog", "red fox"]
    with pytest.raises(ClipAdaptError, match="not found"):
        read_class_names(str(tmp_path / "missing.txt"))
    with pytest.raises(ClipAdaptError, match="'Red_Fox'"):
        read_class_names("red fox,Red_Fox")
