"""Routes over real HTTP to a scripted upstream: retries, Retry-After, fallback,
circuit breaking, and what reaches the attempts list."""

from __future__ import annotations

import pytest

from unwalled.backends import build_backend
from unwalled.backends.base import ChatRequest, Message
from unwalled.config import parse_config
from unwalled.errors import RoutingError
from unwalled.routing import Router
from unwalled.testing import ScriptedUpstream

REQUEST = ChatRequest(messages=[Message("user", "hi")], max_tokens=8)


class RecordedSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


OPEN: list = []


def router_for(urls: dict[str, str], routes: dict, sleep: RecordedSleep) -> Router:
    config = parse_config({
        "backends": {name: {"type": "openai", "base_url": url + "/v1"}
                     for name, url in urls.items()},
        "routes": routes})
    backends = {name: build_backend(name, b) for name, b in config.backends.items()}
    OPEN.extend(backends.values())
    return Router(config, backends, sleep=sleep)


@pytest.fixture(autouse=True)
async def close_backends():
    yield
    while OPEN:
        await OPEN.pop().close()


async def test_retry_honours_retry_after_then_succeeds(upstream):
    scripted, url = upstream
    scripted.reset_script([{"status": 429, "retry_after": 3}, "recovered"])
    sleep = RecordedSleep()
    router = router_for({"a": url}, {"r": {"targets": ["a/m"], "retries": 2}}, sleep)
    attempts = []
    answer = await router.complete("r", REQUEST, attempts)
    assert answer.text == "recovered"
    assert sleep.waits == [3.0]
    assert [(a.outcome, a.upstream_status) for a in attempts] == [("error", 429),
                                                                 ("ok", None)]


async def test_backoff_grows_between_retries_of_a_5xx(upstream):
    scripted, url = upstream
    scripted.reset_script([{"status": 503}, {"status": 502}, {"status": 500}, "ok"])
    sleep = RecordedSleep()
    router = router_for({"a": url}, {"r": {"targets": ["a/m"], "retries": 3,
                                           "backoff": {"initial": 1, "multiplier": 2}}},
                        sleep)
    answer = await router.complete("r", REQUEST, [])
    assert answer.text == "ok"
    assert len(sleep.waits) == 3
    # Jittered between half and all of 1, 2, 4 seconds.
    for wait, base in zip(sleep.waits, (1, 2, 4)):
        assert base / 2 <= wait <= base


async def test_fallback_to_the_next_target_after_retries_run_out():
    first, second = ScriptedUpstream([{"status": 503}]), ScriptedUpstream(["from b"])
    with first.running() as url_a, second.running() as url_b:
        sleep = RecordedSleep()
        router = router_for({"a": url_a, "b": url_b},
                            {"r": {"targets": ["a/m", "b/m"], "retries": 1}}, sleep)
        attempts = []
        answer = await router.complete("r", REQUEST, attempts)
    assert answer.text == "from b"
    assert [(a.target, a.outcome) for a in attempts] == [
        ("a/m", "error"), ("a/m", "error"), ("b/m", "ok")]
    assert len(first.requests) == 2 and len(second.requests) == 1


async def test_retry_after_beyond_the_cap_falls_back_at_once():
    first, second = ScriptedUpstream([{"status": 429, "retry_after": 3600}]), \
        ScriptedUpstream(["from b"])
    with first.running() as url_a, second.running() as url_b:
        sleep = RecordedSleep()
        router = router_for({"a": url_a, "b": url_b},
                            {"r": {"targets": ["a/m", "b/m"], "retries": 3}}, sleep)
        answer = await router.complete("r", REQUEST, [])
    assert answer.text == "from b" and sleep.waits == []


async def test_a_client_error_is_not_retried_nor_fallen_back(upstream):
    scripted, url = upstream
    scripted.reset_script([{"status": 400, "message": "context too long"}])
    router = router_for({"a": url, "b": url},
                        {"r": {"targets": ["a/m", "b/m"], "retries": 3}}, RecordedSleep())
    with pytest.raises(RoutingError) as err:
        await router.complete("r", REQUEST, [])
    assert len(scripted.requests) == 1
    assert err.value.status == 400 and "context too long" in err.value.message


async def test_timeout_per_target_then_fallback():
    slow, fast = ScriptedUpstream([{"text": "late", "delay": 2}]), ScriptedUpstream(["b"])
    with slow.running() as url_a, fast.running() as url_b:
        router = router_for({"a": url_a, "b": url_b}, {"r": {
            "targets": [{"target": "a/m", "timeout": 0.2}, "b/m"], "retries": 0}},
            RecordedSleep())
        attempts = []
        answer = await router.complete("r", REQUEST, attempts)
    assert answer.text == "b"
    assert attempts[0].code == "backend_timeout"


async def test_circuit_opens_after_failures_and_skips_the_target():
    broken, good = ScriptedUpstream([{"status": 500}]), ScriptedUpstream(["good"])
    with broken.running() as url_a, good.running() as url_b:
        router = router_for({"a": url_a, "b": url_b}, {"r": {
            "targets": ["a/m", "b/m"], "retries": 0,
            "breaker": {"failures": 2, "reset_after": 60}}}, RecordedSleep())
        for _ in range(2):
            await router.complete("r", REQUEST, [])
        attempts = []
        await router.complete("r", REQUEST, attempts)
    assert len(broken.requests) == 2  # the third call never reached it
    assert [a.outcome for a in attempts] == ["circuit_open", "ok"]
    assert await router.breakers["r"].state("a/m") == "open"


async def test_half_open_circuit_lets_one_trial_through_and_closes_on_success():
    from unwalled.routing import CircuitBreaker

    now = [0.0]
    breaker = CircuitBreaker(failures=1, reset_after=10, clock=lambda: now[0])
    await breaker.failure("t")
    assert not await breaker.allow("t")
    now[0] = 11
    assert await breaker.allow("t") and not await breaker.allow("t")  # one trial only
    await breaker.success("t")
    assert await breaker.state("t") == "closed" and await breaker.allow("t")


async def test_a_trial_that_ends_in_a_client_error_does_not_keep_the_circuit_shut(
        upstream):
    """The half-open trial gets a 400: the target answered, so the next call may
    try it again, instead of the circuit staying open for good."""
    scripted, url = upstream
    now = [0.0]
    router = router_for({"a": url}, {"r": {"targets": ["a/m"], "retries": 0,
                                           "breaker": {"failures": 1, "reset_after": 10}}},
                        RecordedSleep())
    from unwalled.routing import CircuitBreaker
    router.breakers["r"] = breaker = CircuitBreaker(1, 10, clock=lambda: now[0])
    scripted.reset_script([{"status": 500}, {"status": 400, "message": "bad"}, "back"])
    with pytest.raises(RoutingError):
        await router.complete("r", REQUEST, [])
    now[0] = 11
    with pytest.raises(RoutingError) as err:  # the trial: refused as a bad request
        await router.complete("r", REQUEST, [])
    assert err.value.status == 400
    answer = await router.complete("r", REQUEST, [])
    assert answer.text == "back" and await breaker.state("a/m") == "closed"


async def test_a_half_open_trial_whose_caller_is_cancelled_frees_the_circuit(upstream):
    import asyncio

    from unwalled.routing import CircuitBreaker

    scripted, url = upstream
    now = [0.0]
    router = router_for({"a": url}, {"r": {"targets": ["a/m"], "retries": 0}},
                        RecordedSleep())
    router.breakers["r"] = breaker = CircuitBreaker(1, 10, clock=lambda: now[0])
    await breaker.failure("a/m")
    now[0] = 11
    scripted.reset_script([{"text": "slow", "delay": 5}, "back"])
    attempts = []
    trial = asyncio.ensure_future(router.complete("r", REQUEST, attempts))
    await asyncio.sleep(0.3)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert attempts[0].outcome == "cancelled"
    assert (await router.complete("r", REQUEST, [])).text == "back"  # not shut out


async def test_a_trial_whose_caller_vanished_expires_after_reset_after():
    from unwalled.routing import CircuitBreaker

    now = [0.0]
    breaker = CircuitBreaker(failures=1, reset_after=10, clock=lambda: now[0])
    await breaker.failure("t")
    now[0] = 11
    assert await breaker.allow("t")  # the trial; its caller never reports back
    now[0] = 15
    assert not await breaker.allow("t")
    now[0] = 21.5
    assert await breaker.allow("t")


async def test_a_redirect_is_not_followed(upstream):
    """Following one could take a local-only route's traffic off the machine."""
    scripted, url = upstream
    elsewhere = ScriptedUpstream(["from elsewhere"])
    with elsewhere.running() as other:
        scripted.reset_script([{"redirect": other + "/v1/chat/completions"}])
        router = router_for({"a": url}, {"r": {"targets": ["a/m"], "retries": 2}},
                            RecordedSleep())
        with pytest.raises(RoutingError) as err:
            await router.complete("r", REQUEST, [])
    assert elsewhere.requests == [] and len(scripted.requests) == 1  # nor retried
    assert "307" in err.value.message and "not followed" in err.value.message


async def test_a_retry_after_of_inf_or_nan_is_ignored_not_a_crash(upstream):
    scripted, url = upstream
    for odd in ("inf", "nan", "1e400"):
        scripted.reset_script([{"status": 503, "retry_after": odd}, "fine"])
        sleep = RecordedSleep()
        router = router_for({"a": url}, {"r": {"targets": ["a/m"], "retries": 1}}, sleep)
        assert (await router.complete("r", REQUEST, [])).text == "fine"
        assert len(sleep.waits) == 1 and sleep.waits[0] < 60  # the route's backoff


async def test_an_upstream_error_that_echoes_a_key_is_redacted(upstream):
    scripted, url = upstream
    key = "sk-proj-" + "Zq8Jm2Kx9Wv4Tn7Rb1Yc5Hd3Lf6Gp0Ae"
    scripted.reset_script([{"status": 401, "message": f"Incorrect API key: {key}"}])
    router = router_for({"a": url}, {"r": {"targets": ["a/m"]}}, RecordedSleep())
    attempts = []
    with pytest.raises(RoutingError) as err:
        await router.complete("r", REQUEST, attempts)
    assert key not in err.value.message and key not in attempts[0].error
    assert "Incorrect API key: [SECRET_1]" in err.value.message


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_streams_error_event_is_redacted_too(kind):
    key = "sk-upstream-" + "Qx7Lm3Vb8Nc2Zr5Tw9Yh4Kd6"
    scripted = ScriptedUpstream([{"stream_error": f"bad key {key} for ann@corp.example"}])
    with scripted.running() as url:
        config = parse_config({
            "backends": {"u": {"type": kind, "base_url": url + ("/v1" if kind == "openai"
                                                                else "")}},
            "routes": {"r": {"targets": ["u/m"], "retries": 0}}})
        backend = build_backend("u", config.backends["u"])
        OPEN.append(backend)
        router = Router(config, {"u": backend}, sleep=RecordedSleep())
        with pytest.raises(RoutingError) as err:
            async for _ in router.stream("r", REQUEST, []):
                pass
    assert key not in err.value.message and "ann@corp.example" not in err.value.message
    assert "[SECRET_1]" in err.value.message and key not in str(err.value.last)


async def test_unreachable_upstream_is_retryable_and_named():
    router = router_for({"a": "http://127.0.0.1:9"}, {"r": {"targets": ["a/m"],
                                                           "retries": 1}},
                        RecordedSleep())
    with pytest.raises(RoutingError) as err:
        await router.complete("r", REQUEST, [])
    assert err.value.status == 503
    assert "cannot reach upstream" in err.value.message
    assert "add a fallback target" in err.value.message


async def test_stream_falls_back_before_the_first_piece():
    first, second = ScriptedUpstream([{"status": 502}]), ScriptedUpstream(["streamed b"])
    with first.running() as url_a, second.running() as url_b:
        router = router_for({"a": url_a, "b": url_b},
                            {"r": {"targets": ["a/m", "b/m"], "retries": 0}},
                            RecordedSleep())
        attempts = []
        text = "".join([d.text async for d in router.stream("r", REQUEST, attempts)])
    assert text == "streamed b"
    assert [a.outcome for a in attempts] == ["error", "ok"]


async def test_max_tokens_ceiling_of_a_route():
    from unwalled.errors import LimitExceededError

    router = router_for({}, {"r": {"targets": ["mock/m"], "max_tokens": 10}},
                        RecordedSleep())
    route = router.route("r")
    assert router.prepare(route, ChatRequest([Message("user", "x")])).max_tokens == 10
    with pytest.raises(LimitExceededError) as err:
        router.prepare(route, ChatRequest([Message("user", "x")], max_tokens=11))
    assert "ceiling of 10" in err.value.message
