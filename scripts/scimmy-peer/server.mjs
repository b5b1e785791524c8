// A SCIM service built the way SCIMMY's documentation shows: SCIMMY + its Express
// routers, Users kept in memory, nothing configured beyond the defaults. Test peer only.
//   node server.mjs --port 8081 --bearer-token TOKEN
import { randomUUID } from "node:crypto";
import express from "express";
import SCIMMY from "scimmy";
import SCIMMYRouters from "scimmy-routers";

const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
};
const port = Number(arg("port", "8081"));
const token = arg("bearer-token", "");

const users = new Map();

SCIMMY.Resources.declare(SCIMMY.Resources.User, {
    egress: (resource) => {
        if (resource.id) {
            const user = users.get(resource.id);
            if (!user) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
            return user;
        }
        const all = [...users.values()];
        return resource.filter ? resource.filter.match(all) : all;
    },
    ingress: (resource, instance) => {
        const clash = [...users.values()].find(
            (u) => u.userName.toLowerCase() === instance.userName.toLowerCase() && u.id !== resource.id);
        if (clash) throw new SCIMMY.Types.Error(409, "uniqueness", "userName is already taken");
        if (resource.id && !users.has(resource.id))
            throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
        const id = resource.id ?? randomUUID();
        const now = new Date().toISOString();
        const created = users.get(id)?.meta?.created ?? now;
        const user = { ...JSON.parse(JSON.stringify(instance)), id,
            meta: { resourceType: "User", created, lastModified: now } };
        users.set(id, user);
        return user;
    },
    degress: (resource) => {
        if (!users.delete(resource.id))
            throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
    },
});

const app = express();
app.use("/v2", new SCIMMYRouters({
    type: "bearer",
    handler: (req) => {
        if (token && req.header("Authorization") !== `Bearer ${token}`) throw new Error("bad token");
        return "test";
    },
}));
app.listen(port, "127.0.0.1");
