# snmpsim variation module: a UPS whose battery test can be started by SET (tests/test_ups_test.py).
#
# Records name their role in the value: `1.3.6.1.2.1.33.1.7.1.0|6:upstest|id`. Roles: id
# (upsTestId, writable), lock (upsTestSpinLock), summary, detail, charge, volts, runtime,
# source, locked (an upsTestId the agent refuses to write: notWritable). A SET of id with the
# right spin lock starts a test: the output source goes to battery, and every GET of the
# summary moves the test one step (charge -5 %, voltage -0.8 V) until it passes after STEPS.
# Executed by snmpsim (moduleContext, agentContext and recordContext are its globals); the
# agent context is per data file, so each simulated UPS has its own test.
from pysnmp.smi import error

STEPS = 4
TEST_IDS = ("1.3.6.1.2.1.33.1.7.7.4", "1.3.6.1.2.1.33.1.7.7.5")


def init(**context):
    pass


def _ups():
    if "ups" not in agentContext:  # noqa: F821 - injected by snmpsim
        agentContext["ups"] = {"summary": 6, "lock": 7, "step": 0, "charge": 100,  # noqa: F821
                               "volts": 545, "runtime": 40, "source": 3,
                               "id": "1.3.6.1.2.1.33.1.7.7.1", "detail": ""}
    return agentContext["ups"]  # noqa: F821


def variate(oid, tag, value, **context):
    if not context["nextFlag"] and not context["exactMatch"]:
        return context["origOid"], tag, context["errorStatus"]
    ups = _ups()
    role = str(value)
    base = tag.split(":")[0]
    if context["setFlag"]:
        idx = max(0, context["varsTotal"] - context["varsRemaining"] - 1)
        new = context["origValue"]
        if role == "lock":
            if int(new) != ups["lock"]:
                raise error.InconsistentValueError(name=oid, idx=idx)
            ups["lock"] += 1
            return oid, base, new
        if role == "id":
            text = ".".join(str(x) for x in new)
            if text not in TEST_IDS or ups["summary"] == 5:
                raise error.WrongValueError(name=oid, idx=idx)
            # the battery is full again at every start (each test of the suite starts alike)
            ups.update(id=text, summary=5, step=0, source=5, detail="", charge=100, volts=545,
                       runtime=40)
            return oid, base, new
        raise error.NotWritableError(name=oid, idx=idx)
    if role == "summary" and ups["summary"] == 5:
        ups["step"] += 1
        ups["charge"] -= 5
        ups["volts"] -= 8
        ups["runtime"] -= 2
        if ups["step"] >= STEPS:
            ups.update(summary=1, source=3, detail="battery test passed")
    if role == "locked":
        return oid, base, "1.3.6.1.2.1.33.1.7.7.1"
    return oid, base, str(ups[role])


def shutdown(**context):
    pass
