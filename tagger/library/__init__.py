"""The library pipeline that every front door runs: walk the roots, settle, take scores from the
cache or the analysis engine, decide with the policy, write crash-safely, record."""
