import grpc
from graphmesh.client import api_client
from helpers import create_run, new_thread, wait_status, TERMINAL
from graphmesh.v1 import graph_service_pb2 as gpb, run_pb2
from graphmesh.v1 import run_service_pb2 as pb

def test_race(mesh):
    c = api_client(mesh.api_address)
    fails = 0
    for i in range(5):
        c.graphs.DisableNode(gpb.DisableNodeRequest(graph="research_assistant", node="rank", reason="x"))
        import time; time.sleep(1.5)
        run = create_run(c, "research_assistant", {"question": "q", "delay_seconds": 0.1}, thread_id=new_thread())
        r = wait_status(c, run.run_id, TERMINAL | {run_pb2.RUN_STATUS_PAUSED})
        assert r.status == run_pb2.RUN_STATUS_PAUSED
        c.graphs.EnableNode(gpb.EnableNodeRequest(graph="research_assistant", node="rank"))
        try:
            c.runs.ResumeRun(pb.ResumeRunRequest(run_id=run.run_id))
        except grpc.RpcError as e:
            fails += 1
            print("immediate resume failed:", e.details())
            time.sleep(1)
            c.runs.ResumeRun(pb.ResumeRunRequest(run_id=run.run_id))
        wait_status(c, run.run_id, TERMINAL)
    print("FAILS", fails, "of 5")
