// The TechEmpower-style app of bench/aspnetcore.sh, on the transport named by the first argument:
//   AspNetCoreServer iomux-inline|iomux-threadpool|sockets|sockets-inline PORT [THREADS]
// GET /plaintext answers "Hello, World!"; GET /json answers {"message":"Hello, World!"}.
using System.Net;
using System.Text.Json.Serialization;
using IoMux.AspNetCore;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

var transport = args.Length > 0 ? args[0] : "iomux-inline";
int port = args.Length > 1 ? int.Parse(args[1]) : 8080;
int threads = args.Length > 2 ? int.Parse(args[2]) : Environment.ProcessorCount;

var builder = WebApplication.CreateSlimBuilder();
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(o => o.Listen(IPAddress.Loopback, port));
builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, BenchJson.Default));
switch (transport)
{
    case "iomux-inline":
    case "iomux-threadpool":
        builder.WebHost.UseIoMux(o =>
        {
            o.ThreadCount = threads;
            o.Scheduling = transport == "iomux-inline" ? ApplicationScheduling.Inline : ApplicationScheduling.ThreadPool;
        });
        break;
    case "sockets":
        builder.WebHost.UseSockets(o => o.IOQueueCount = threads);
        break;
    case "sockets-inline":
        builder.WebHost.UseSockets(o =>
        {
            o.IOQueueCount = threads;
            o.UnsafePreferInlineScheduling = true; // Kestrel's own "inline completions" mode
        });
        break;
    default:
        Console.Error.WriteLine($"unknown transport '{transport}'");
        return 2;
}
var app = builder.Build();
var hello = "Hello, World!"u8.ToArray();
app.MapGet("/plaintext", () => Results.Bytes(hello, "text/plain"));
app.MapGet("/json", () => Results.Json(new Message("Hello, World!"), BenchJson.Default.Message));
// Bytes allocated by the whole process so far (every thread): the script takes the difference over a run.
app.MapGet("/allocated", () => Results.Text(GC.GetTotalAllocatedBytes(precise: true).ToString()));
Console.WriteLine($"listening on {port} ({transport}, {threads} threads)");
app.Run();
return 0;

internal sealed record Message(string message);

[JsonSerializable(typeof(Message))]
internal sealed partial class BenchJson : JsonSerializerContext;
