"""The serving benchmark's parts: stacks, servers, wrk, results, report, compute ceiling."""
