"""The stages of a round, as plain functions that run without Prefect.

prepare (problems in, shards out; the round's model), generate (trials, verdicts, reflections), curate (D+, D±,
Dpref), evaluate (Acc@t1, Acc@t2 on held-out problems), lineage (which rounds ran and whether to go on), report
(the round's tables and curves) and interop (the official ReflectEvo data format); trial is the one step that
generate and evaluate share. tasks/ wraps them with Prefect options; they take configs and paths from the contract
(reflectevo/) and call models, problems and verifiers below them.
"""
