// docs/LOOP.md quotes this file: an echo server on an IoMux event loop with a .NET generic host's lifetime.
// Run it with `dotnet run --project samples/HostedEcho -- 7008` and `socat - TCP:127.0.0.1:7008`; Ctrl+C stops
// the host, which asks the loop to exit (its exit source closes every socket) and waits for its thread.
using System.Net;
using IoMux.Hosting;
using IoMux.Samples;
using Microsoft.Extensions.Hosting;

int port = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 7008;
var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddEventLoop(loop => HostedEcho.Serve(loop, HostedEcho.Listen(new IPEndPoint(IPAddress.Loopback, port))));
using var host = builder.Build();
await host.RunAsync();
