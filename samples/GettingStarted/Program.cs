// docs/GETTING-STARTED.md quotes this file: wait for a pipe to become readable, on whatever backend this OS has.
using System.IO.Pipes;
using IoMux;

using var poller = PollerFactory.Create();            // epoll, kqueue or event ports; IOMUX_BACKEND=poll forces one
Console.WriteLine($"backend: {poller.Capabilities.Name}");

using var reader = new AnonymousPipeServerStream(PipeDirection.In);
using var writer = new AnonymousPipeClientStream(PipeDirection.Out, reader.ClientSafePipeHandle);
using var registration = poller.Register(reader.SafePipeHandle, token: 1, Interest.Readable);

writer.WriteByte(42);
var events = new PollEvent[16];                       // reused for every wait: waiting allocates nothing
int count = poller.Wait(events, TimeSpan.FromSeconds(5));
foreach (var e in events.AsSpan(0, count))
    Console.WriteLine($"token {e.Token}: {e.Readiness}"); // token 1: Readable
