// docs/SERVERS.md quotes this file: a static file server on IoMux.Web, one event loop per core.
using System.Net;
using System.Runtime.InteropServices;
using IoMux.Web.Http;

string root = args.Length > 0 ? args[0] : ".";
var options = new HttpServerOptions
{
    ThreadCount = Environment.ProcessorCount,         // one loop, one SO_REUSEPORT listener per thread
    HeaderTimeout = TimeSpan.FromSeconds(10),         // slowloris: 408 and close
    KeepAliveTimeout = TimeSpan.FromSeconds(60),
    SendTimeout = TimeSpan.FromSeconds(60),           // between two writes that make progress
};
using var server = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 8080), root, options);
Console.WriteLine($"serving {Path.GetFullPath(root)} on http://{server.Endpoint}/");

using var stop = new ManualResetEventSlim();
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
stop.Wait();
