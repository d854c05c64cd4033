// YARP (Yarp.ReverseProxy, configured in code) for bench/aspnetcore.sh, on the transport named by the first argument:
//   YarpServer iomux|sockets PORT THREADS UPSTREAM_PORT
// Every request is forwarded to http://127.0.0.1:UPSTREAM_PORT (nginx in the script), as a YARP edge proxy would.
using System.Net;
using IoMux.AspNetCore;
using Yarp.ReverseProxy.Configuration;

if (args.Length < 4)
{
    Console.Error.WriteLine("usage: YarpServer iomux|sockets PORT THREADS UPSTREAM_PORT");
    return 2;
}
string transport = args[0];
int port = int.Parse(args[1]);
int threads = int.Parse(args[2]);
int upstream = int.Parse(args[3]);

var builder = WebApplication.CreateSlimBuilder();
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(o => o.Listen(IPAddress.Loopback, port));
switch (transport)
{
    case "iomux":
        builder.WebHost.UseIoMux(o => o.ThreadCount = threads); // the default scheduling (thread pool)
        break;
    case "sockets":
        builder.WebHost.UseSockets(o => o.IOQueueCount = threads);
        break;
    default:
        Console.Error.WriteLine($"unknown transport '{transport}'");
        return 2;
}
builder.Services.AddReverseProxy().LoadFromMemory(
    [new RouteConfig { RouteId = "all", ClusterId = "upstream", Match = new RouteMatch { Path = "{**catch-all}" } }],
    [new ClusterConfig
    {
        ClusterId = "upstream",
        Destinations = new Dictionary<string, DestinationConfig> { ["nginx"] = new() { Address = $"http://127.0.0.1:{upstream}/" } },
    }]);
var app = builder.Build();
app.MapReverseProxy();
Console.WriteLine($"YARP listening on {port} ({transport}, {threads} threads) -> 127.0.0.1:{upstream}");
app.Run();
return 0;
