from boot2ipxe.cli import main

raise SystemExit(main())
