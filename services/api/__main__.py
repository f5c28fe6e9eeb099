from graphmesh.rpc.host import serve
from services.api.server import main

if __name__ == "__main__":
    serve(main)
