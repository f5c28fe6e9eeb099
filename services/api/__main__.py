import asyncio

from services.api.server import main

if __name__ == "__main__":
    asyncio.run(main())
