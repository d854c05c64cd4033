// The README's event-loop example: stdin lines echoed, a heartbeat timer, SIGINT/SIGTERM to stop.
using System.Runtime.InteropServices;
using IoMux;
using IoMux.Loop;

using var loop = new EventLoop(PollerFactory.Create());
var buffer = new byte[4096];
loop.AddIo(0, Interest.Readable, (source, readiness) =>
{
    int n = Console.OpenStandardInput().Read(buffer);   // stdin is readable: this does not block
    if (n == 0) { loop.Exit(0); return; }               // end of input
    Console.Write($"echo: {System.Text.Encoding.UTF8.GetString(buffer, 0, n)}");
});
loop.AddTimer(TimeSpan.FromSeconds(1), _ => Console.WriteLine($"tick {loop.Iterations}"),
    accuracy: TimeSpan.FromMilliseconds(50), period: TimeSpan.FromSeconds(1));
loop.AddSignal(PosixSignal.SIGINT, (_, _) => loop.Exit(130));
loop.AddSignal(PosixSignal.SIGTERM, (_, _) => loop.Exit(143));
loop.AddExit(_ => Console.WriteLine("bye"));
return loop.Run();
