from graphmesh.rpc.host import serve
from services.review.server import main

if __name__ == "__main__":
    serve(main)
