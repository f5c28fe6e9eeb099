import asyncio

from services.worker.server import main

if __name__ == "__main__":
    asyncio.run(main())
