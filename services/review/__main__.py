import asyncio

from services.review.server import main

if __name__ == "__main__":
    asyncio.run(main())
